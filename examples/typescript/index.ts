// Two queues, a trigger and a schedule, with the SDK generated from supaqueue's provider schema
// (sdk/nodejs), in the installation the Python program's stack owns.
import * as pulumi from "@pulumi/pulumi";
import * as supaqueue from "@supaqueue/pulumi";

const config = new pulumi.Config();
const dbUrl = config.requireSecret("dbUrl");

// Who this stack is, as the database records owners (the Python component does the same).
const stack = `${pulumi.getProject()}/${pulumi.getStack()}`;
const identity = new supaqueue.StackIdentity("identity", { stack });
const owner = { stack, stack_id: identity.stack_id };

// Refuses (at preview) when supaqueue is not installed or this stack owns it; removes nothing.
const installation = new supaqueue.ExternalInstallation("installation", { db_url: dbUrl, owner });
const after = { dependsOn: [installation] };

const signups = new supaqueue.Queue("signups", {
    name: "ts-signups",
    edge_function_name: "demo-target",
    workers: 2,
    retention_seconds: 604800, // unset is read as null (jobs kept for ever): say the default
    db_url: dbUrl,
    owner,
}, after);

const reports = new supaqueue.Queue("reports", {
    name: "ts-reports",
    edge_function_name: "demo-target",
    workers: 1,
    max_attempts: 3,
    retention_seconds: 604800,
    db_url: dbUrl,
    owner,
}, after);

// One job per new row of public.signups (the table is the application's).
new supaqueue.Trigger("newSignup", {
    name: "ts-new-signup",
    table: "public.signups",
    events: ["INSERT"],
    queue_id: signups.queue_id,
    db_url: dbUrl,
});

const nightly = new supaqueue.Schedule("nightlyReport", {
    name: "ts-nightly-report",
    cron: "0 3 * * *",
    payload: { report: "daily" },
    queue_id: reports.queue_id,
    db_url: dbUrl,
});

export const queueIds = { "ts-signups": signups.queue_id, "ts-reports": reports.queue_id };
export const nextReportRun = nightly.next_run_at;
