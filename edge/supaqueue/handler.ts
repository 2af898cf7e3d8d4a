// The request handler: authenticate, validate, answer 202 at once, then call the target and
// report in the background. pg_net waits for the slowest request of each batch, so nothing
// slow may happen before the answer.
import { runInBackground } from "./background.ts";
import { readCapped } from "./capped_read.ts";
import { readConfig } from "./config.ts";
import { type Dispatch, InvalidDispatch, parseDispatch } from "./dispatch_body.ts";
import { log } from "./log.ts";
import { database, endCurrentJob } from "./report.ts";
import { secretMatches } from "./secret.ts";
import { callTarget, type TargetEnv } from "./target_call.ts";

const MAX_DISPATCH_BYTES = 10 * 1024 * 1024;

function json(status: number, body: Record<string, unknown>): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json" },
  });
}

async function runJob(d: Dispatch, target: TargetEnv, dbUrl: string): Promise<void> {
  try {
    const outcome = await callTarget(d, target);
    const current = await endCurrentJob(database(dbUrl), d.currentJob.id, outcome);
    log(current === null ? "error" : "info", "job_reported", {
      current_job: d.currentJob.id,
      job: d.job.id,
      queue: d.queue.name,
      status_code: outcome.statusCode,
      successful: outcome.isSuccessful,
      duration_ms: outcome.durationMs,
      error: outcome.error,
      lease_current: current,
    });
  } catch (err) {
    // Last resort: an unhandled rejection would end the whole Deno worker.
    log("error", "run_failed", {
      current_job: d.currentJob.id,
      message: err instanceof Error ? err.message : String(err),
    });
  }
}

export type Env = (name: string) => string | undefined;

export function createHandler(env: Env): (request: Request) => Promise<Response> {
  return async (request: Request): Promise<Response> => {
    const secret = env("SUPAQUEUE_SECRET") ?? "";
    if (secret === "") {
      log("error", "misconfigured", { missing: "SUPAQUEUE_SECRET" });
      return json(500, { error: "SUPAQUEUE_SECRET is not set for this function" });
    }
    if (!(await secretMatches(request.headers.get("supaqueue-secret"), secret))) {
      return json(401, { error: "missing or wrong supaqueue-secret header" });
    }
    if (request.method !== "POST") {
      return new Response(JSON.stringify({ error: "only POST is accepted" }), {
        status: 405,
        headers: { "content-type": "application/json", allow: "POST" },
      });
    }
    const config = readConfig(env);
    if (!config.ok) {
      log("error", "misconfigured", { missing: config.missing.join(",") });
      return json(500, { error: `missing environment: ${config.missing.join(", ")}` });
    }
    const tooLarge = () => json(413, { error: `dispatch body over ${MAX_DISPATCH_BYTES} bytes` });
    if (Number(request.headers.get("content-length") ?? "0") > MAX_DISPATCH_BYTES) {
      return tooLarge();
    }
    let dispatch: Dispatch;
    try {
      const { bytes, truncated } = await readCapped(request.body, MAX_DISPATCH_BYTES);
      if (truncated) return tooLarge();
      dispatch = parseDispatch(new TextDecoder().decode(bytes));
    } catch (err) {
      if (err instanceof InvalidDispatch) return json(400, { error: err.message });
      return json(400, { error: "could not read the request body" });
    }
    const { supabaseUrl, serviceRoleKey, dbUrl } = config.config;
    const work = runJob(dispatch, { supabaseUrl, serviceRoleKey }, dbUrl);
    runInBackground(work);
    return json(202, { accepted: true, current_job: dispatch.currentJob.id });
  };
}
