// supaqueue installed with two queues, a trigger and a schedule, in Go: the `Supaqueue`
// component from the SDK generated from supaqueue's provider schema (sdk/go). The provider
// plugin runs it (the Python program's component), so the installation is the same.
package main

import (
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/config"
	"github.com/supaqueue/supaqueue/sdk/go/supaqueue"
)

func main() {
	pulumi.Run(func(ctx *pulumi.Context) error {
		cfg := config.New(ctx, "")
		var managementApiUrl pulumi.StringPtrInput // unset: https://api.supabase.com
		if url := cfg.Get("managementApiUrl"); url != "" {
			managementApiUrl = pulumi.String(url)
		}
		installation, err := supaqueue.NewSupaqueue(ctx, "supaqueue", &supaqueue.SupaqueueArgs{
			Project_ref:        pulumi.String(cfg.Require("projectRef")),
			Api_url:            pulumi.String(cfg.Require("apiUrl")),
			Management_api_url: managementApiUrl,
			Db_url:             cfg.RequireSecret("dbUrl"),
			Access_token:       cfg.RequireSecret("accessToken"),
			// The example target function, deployed from the repository's edge/ folder.
			Demo:     pulumi.BoolPtr(true),
			Edge_dir: pulumi.StringPtr("../../edge"),
			Queues: supaqueue.QueueSpecMap{
				"go-signups": supaqueue.QueueSpecArgs{
					Edge_function_name: pulumi.String("demo-target"),
					Workers:            pulumi.IntPtr(2),
				},
				// Finished jobs stay for ever (unset: deleted after 7 days).
				"go-reports": supaqueue.QueueSpecArgs{
					Edge_function_name:    pulumi.String("demo-target"),
					Max_attempts:          pulumi.IntPtr(3),
					Keep_finished_forever: pulumi.BoolPtr(true),
				},
			},
			// One job per new row of public.signups (the table is the application's).
			Triggers: supaqueue.TriggerSpecArray{supaqueue.TriggerSpecArgs{
				Name:   pulumi.String("go-new-signup"),
				Table:  pulumi.String("public.signups"),
				Events: pulumi.StringArray{pulumi.String("INSERT")},
				Queue:  pulumi.String("go-signups"),
			}},
			Schedules: supaqueue.ScheduleSpecArray{supaqueue.ScheduleSpecArgs{
				Name:    pulumi.String("go-nightly-report"),
				Cron:    pulumi.String("0 3 * * *"),
				Payload: pulumi.Map{"report": pulumi.String("daily")},
				Queue:   pulumi.String("go-reports"),
			}},
		})
		if err != nil {
			return err
		}
		ctx.Export("functionUrl", installation.Function_url)
		ctx.Export("queueIds", installation.Queue_ids)
		ctx.Export("nextReportRuns", installation.Schedule_next_runs.ApplyT(
			func(runs map[string][]string) []string { return runs["go-nightly-report"] }))
		return nil
	})
}
