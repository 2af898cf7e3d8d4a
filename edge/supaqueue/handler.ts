// The request handler: authenticate, read the dispatch's references, answer 202 at once, then in
// the background claim the lease, call the target and report. pg_net waits for the slowest
// request of each batch, so nothing slow (not even the claim) happens before the answer.
import { runInBackground } from "./background.ts";
import { readCapped } from "./capped_read.ts";
import { readConfig } from "./config.ts";
import {
  type Dispatch,
  type DispatchRef,
  InvalidDispatch,
  parseDispatch,
  parseRef,
} from "./dispatch_body.ts";
import { log } from "./log.ts";
import { claimCurrentJob, database, endCurrentJob, refuseCurrentJob, type Sql } from "./report.ts";
import { secretMatches } from "./secret.ts";
import { callTarget, type TargetEnv } from "./target_call.ts";

// pg_net's body holds references only (about 150 bytes); anything near this is not ours.
const MAX_DISPATCH_BYTES = 64 * 1024;

function json(status: number, body: Record<string, unknown>): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json" },
  });
}

// The job to run, or null when there is none (the lease is not current, or was refused).
async function claim(sql: Sql, ref: DispatchRef): Promise<Dispatch | null> {
  const claimed = await claimCurrentJob(sql, ref);
  const fields = { current_job: ref.currentJob, job: ref.job };
  switch (claimed.kind) {
    case "not_current":
      // Delivered late (its lease expired and the job was retried), twice, or after the attempt
      // ended: calling the target now could exceed `workers` or run the job twice.
      log("warn", "dispatch_not_current", fields);
      return null;
    case "refused":
      log("error", "dispatch_refused", { ...fields, reason: claimed.reason });
      return null;
    case "failed":
      return null; // logged as claim_failed; the lease expires and the job is retried
    case "no_claim_function":
      if (ref.legacy === null) {
        log("error", "dispatch_not_claimable", fields);
        return null;
      }
      // An upgrade in progress: the database still sends whole jobs and cannot claim.
      break;
  }
  const source = claimed.kind === "claimed" ? claimed.job : ref.legacy;
  try {
    const d = parseDispatch(source);
    if (d.currentJob.id !== ref.currentJob) throw new InvalidDispatch("claimed another lease");
    return d;
  } catch (err) {
    const reason = err instanceof InvalidDispatch ? err.message : String(err);
    // The job can never run as stored (say, a header HTTP cannot carry): a final failure with
    // the reason, never a lease expiry and retries refused the same way.
    const ended = claimed.kind === "claimed"
      ? await refuseCurrentJob(sql, ref.currentJob, reason)
      : null;
    log("error", "dispatch_refused", { ...fields, reason, lease_current: ended });
    return null;
  }
}

async function runJob(ref: DispatchRef, target: TargetEnv, dbUrl: string): Promise<void> {
  try {
    const sql = database(dbUrl);
    const d = await claim(sql, ref);
    if (d === null) return;
    const outcome = await callTarget(d, target);
    const current = await endCurrentJob(sql, d.currentJob.id, outcome);
    log(current === null ? "error" : "info", "job_reported", {
      current_job: d.currentJob.id,
      job: d.job.id,
      queue: d.queue.name,
      status_code: outcome.statusCode,
      successful: outcome.isSuccessful,
      duration_ms: outcome.durationMs,
      error: outcome.error,
      note: outcome.note,
      lease_current: current,
    });
  } catch (err) {
    // Last resort: an unhandled rejection would end the whole Deno worker.
    log("error", "run_failed", {
      current_job: ref.currentJob,
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
    let ref: DispatchRef;
    try {
      const { bytes, truncated } = await readCapped(request.body, MAX_DISPATCH_BYTES);
      if (truncated) return tooLarge();
      ref = parseRef(new TextDecoder().decode(bytes));
    } catch (err) {
      if (err instanceof InvalidDispatch) return json(400, { error: err.message });
      return json(400, { error: "could not read the request body" });
    }
    const { supabaseUrl, serviceRoleKey, dbUrl } = config.config;
    runInBackground(runJob(ref, { supabaseUrl, serviceRoleKey }, dbUrl));
    return json(202, { accepted: true, current_job: ref.currentJob });
  };
}
