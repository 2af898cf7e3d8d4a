// Two queues, a trigger and a schedule, with the SDK generated from supaqueue's provider schema
// (sdk/go), in the installation the Python program's stack owns.
package main

import (
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/config"
	"github.com/supaqueue/supaqueue/sdk/go/supaqueue"
)

func main() {
	pulumi.Run(func(ctx *pulumi.Context) error {
		dbUrl := config.RequireSecret(ctx, "dbUrl")

		// Who this stack is, as the database records owners (the Python component does the same).
		stack := ctx.Project() + "/" + ctx.Stack()
		identity, err := supaqueue.NewStackIdentity(ctx, "identity", &supaqueue.StackIdentityArgs{
			Stack: pulumi.String(stack),
		})
		if err != nil {
			return err
		}
		owner := pulumi.StringMap{"stack": pulumi.String(stack), "stack_id": identity.Stack_id}

		// Refuses (at preview) when supaqueue is not installed or this stack owns it; removes nothing.
		installation, err := supaqueue.NewExternalInstallation(ctx, "installation",
			&supaqueue.ExternalInstallationArgs{Db_url: dbUrl, Owner: owner})
		if err != nil {
			return err
		}
		after := pulumi.DependsOn([]pulumi.Resource{installation})

		signups, err := supaqueue.NewQueue(ctx, "signups", &supaqueue.QueueArgs{
			Name:               pulumi.String("go-signups"),
			Edge_function_name: pulumi.String("demo-target"),
			Workers:            pulumi.Int(2),
			// Unset is read as null (jobs kept for ever): say the default.
			Retention_seconds: pulumi.Int(604800),
			Db_url:            dbUrl,
			Owner:             owner,
		}, after)
		if err != nil {
			return err
		}
		reports, err := supaqueue.NewQueue(ctx, "reports", &supaqueue.QueueArgs{
			Name:               pulumi.String("go-reports"),
			Edge_function_name: pulumi.String("demo-target"),
			Workers:            pulumi.Int(1),
			Max_attempts:       pulumi.Int(3),
			Retention_seconds:  pulumi.Int(604800),
			Db_url:             dbUrl,
			Owner:              owner,
		}, after)
		if err != nil {
			return err
		}

		// One job per new row of public.signups (the table is the application's).
		if _, err := supaqueue.NewTrigger(ctx, "newSignup", &supaqueue.TriggerArgs{
			Name:     pulumi.String("go-new-signup"),
			Table:    pulumi.String("public.signups"),
			Events:   pulumi.StringArray{pulumi.String("INSERT")},
			Queue_id: signups.Queue_id,
			Db_url:   dbUrl,
		}); err != nil {
			return err
		}
		nightly, err := supaqueue.NewSchedule(ctx, "nightlyReport", &supaqueue.ScheduleArgs{
			Name:     pulumi.String("go-nightly-report"),
			Cron:     pulumi.String("0 3 * * *"),
			Payload:  pulumi.Map{"report": pulumi.String("daily")},
			Queue_id: reports.Queue_id,
			Db_url:   dbUrl,
		})
		if err != nil {
			return err
		}

		ctx.Export("queueIds", pulumi.StringMap{
			"go-signups": signups.Queue_id,
			"go-reports": reports.Queue_id,
		})
		ctx.Export("nextReportRun", nightly.Next_run_at)
		return nil
	})
}
