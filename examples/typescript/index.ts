// supaqueue installed with two queues, a trigger and a schedule, in TypeScript: the `Supaqueue`
// component from the SDK generated from supaqueue's provider schema (sdk/nodejs). The provider
// plugin runs it (the Python program's component), so the installation is the same.
import * as pulumi from "@pulumi/pulumi";
import * as supaqueue from "@supaqueue/pulumi";

const config = new pulumi.Config();

const installation = new supaqueue.Supaqueue("supaqueue", {
    project_ref: config.require("projectRef"),
    api_url: config.require("apiUrl"),
    management_api_url: config.get("managementApiUrl"),
    db_url: config.requireSecret("dbUrl"),
    access_token: config.requireSecret("accessToken"),
    // The example target function, deployed from the repository's edge/ folder.
    demo: true,
    edge_dir: "../../edge",
    queues: {
        "ts-signups": { edge_function_name: "demo-target", workers: 2 },
        // Finished jobs stay for ever (unset: deleted after 7 days).
        "ts-reports": { edge_function_name: "demo-target", max_attempts: 3, keep_finished_forever: true },
    },
    // One job per new row of public.signups (the table is the application's).
    triggers: [{ name: "ts-new-signup", table: "public.signups", events: ["INSERT"], queue: "ts-signups" }],
    schedules: [
        { name: "ts-nightly-report", cron: "0 3 * * *", payload: { report: "daily" }, queue: "ts-reports" },
    ],
});

export const functionUrl = installation.function_url;
export const queueIds = installation.queue_ids;
export const nextReportRuns = installation.schedule_next_runs.apply((runs) => runs["ts-nightly-report"]);
