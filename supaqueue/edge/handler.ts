// The request handler: authenticate, read the dispatch's references, answer 202 at once, then in
// the background claim the lease, call the target and report; each report may hand over the
// worker's next job (a chain, docs/architecture.md), run the same way. pg_net waits for the
// slowest request of each batch, so nothing slow (not even the claim) happens before the answer.
import { runInBackground } from "./background.ts";
import { batchCallSettings, batchOutcomes, buildBatchRequest } from "./batch.ts";
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
import {
  type Claim,
  claimBatch,
  claimCurrentJob,
  database,
  refuseCurrentJob,
  reportBatch,
  reportOutcome,
  type Sql,
} from "./report.ts";
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
// `expected` names the lease a pg_net dispatch referred to; a chained claim has none.
async function accept(
  sql: Sql,
  claimed: Claim,
  expected: { currentJob: string | null; job: string | null; legacy: unknown },
): Promise<Dispatch | null> {
  const fields = { current_job: expected.currentJob, job: expected.job };
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
      if (expected.legacy === null) {
        log("error", "dispatch_not_claimable", fields);
        return null;
      }
      // An upgrade in progress: the database still sends whole jobs and cannot claim.
      log("info", "dispatch_unclaimed_legacy", fields);
      break;
  }
  const source = claimed.kind === "claimed" ? claimed.job : expected.legacy;
  let leaseId = expected.currentJob;
  try {
    const d = parseDispatch(source);
    if (leaseId === null) leaseId = d.currentJob.id;
    else if (d.currentJob.id !== leaseId) throw new InvalidDispatch("claimed another lease");
    return d;
  } catch (err) {
    const reason = err instanceof InvalidDispatch ? err.message : String(err);
    if (leaseId === null) {
      // a chained claim that does not parse is refused by the id it carries (without one, its
      // lease expires and the job is retried)
      const id = (source as { current_job?: { id?: unknown } } | null)?.current_job?.id;
      leaseId = typeof id === "string" ? id : null;
    }
    // The job can never run as stored (say, a header HTTP cannot carry): a final failure with
    // the reason, never a lease expiry and retries refused the same way.
    const ended = claimed.kind === "claimed" && leaseId !== null
      ? await refuseCurrentJob(sql, leaseId, reason)
      : null;
    log("error", "dispatch_refused", {
      ...fields,
      current_job: leaseId,
      reason,
      lease_current: ended,
    });
    return null;
  }
}

// Set when the runtime is about to stop this worker (Supabase dispatches `beforeunload`): running
// chains end after their current job, so the worker goes back to pg_net dispatch at once.
let unloading = false;
globalThis.addEventListener("beforeunload", () => {
  unloading = true;
});

// Runs the dispatched job, then, for as long as the database's chain budget allows
// (supaqueue.report_and_claim), the jobs it hands this worker in the same call as each report.
async function runJobs(
  ref: DispatchRef,
  target: TargetEnv,
  dbUrl: string,
  receivedAt: number,
): Promise<void> {
  let current = ref.currentJob;
  try {
    const sql = database(dbUrl);
    // The claim's `deadline_in_ms` counts from no earlier than this (the database computed it
    // after the claim was sent), so the deadline on our clock is never later than the database's.
    let asked = performance.now();
    let d = await accept(sql, await claimCurrentJob(sql, ref), {
      currentJob: ref.currentJob,
      job: ref.job,
      legacy: ref.legacy,
    });
    let jobs = 0;
    let failed = 0;
    while (d !== null) {
      current = d.currentJob.id;
      const deadlineAt = d.currentJob.deadlineInMs === null
        ? null
        : asked + d.currentJob.deadlineInMs;
      const outcome = await callTarget(d, target, deadlineAt);
      jobs += 1;
      const chain = unloading
        ? null
        : { jobs, elapsedMs: Math.round(performance.now() - receivedAt) };
      asked = performance.now(); // a chained claim comes with the report's answer
      const reported = await reportOutcome(sql, d.currentJob.id, outcome, chain);
      if (!outcome.isSuccessful) failed += 1;
      // The database holds every outcome (supaqueue.job_attempt); the log names each job that
      // needs a look (a failed call, a result not stored as sent, a report that failed or came
      // too late) and sums up the rest once per invocation: a busy chain would otherwise write
      // (and the platform store) a line per job.
      if (!outcome.isSuccessful || outcome.note !== null || reported.current !== true) {
        log(reported.current === null ? "error" : "warn", "job_reported", {
          current_job: d.currentJob.id,
          job: d.job.id,
          queue: d.queue.name,
          status_code: outcome.statusCode,
          successful: outcome.isSuccessful,
          duration_ms: outcome.durationMs,
          error: outcome.error,
          note: outcome.note,
          lease_current: reported.current,
          chain_position: jobs,
        });
      }
      d = reported.next === null
        ? null
        : await accept(sql, reported.next, { currentJob: null, job: null, legacy: null });
    }
    if (jobs > 0) {
      log("info", "dispatch_done", {
        current_job: ref.currentJob,
        jobs,
        succeeded: jobs - failed,
        failed,
        elapsed_ms: Math.round(performance.now() - receivedAt),
      });
    }
  } catch (err) {
    // Last resort: an unhandled rejection would end the whole Deno worker.
    log("error", "run_failed", {
      current_job: current,
      message: err instanceof Error ? err.message : String(err),
    });
  }
}

// A batched queue's dispatch (docs/architecture.md, "Batch delivery"): claims every lease of the
// batch in one statement, calls the target once with all their jobs, reports every outcome in
// one statement. Never chains: the report frees the batch's workers and dispatches again.
async function runBatch(
  batch: string,
  target: TargetEnv,
  dbUrl: string,
  receivedAt: number,
): Promise<void> {
  try {
    const sql = database(dbUrl);
    const asked = performance.now();
    const claims = await claimBatch(sql, batch);
    if (claims === null) return; // logged as claim_failed; the leases expire, jobs are retried
    if (claims.length === 0) {
      log("warn", "dispatch_not_current", { current_job: batch, batch });
      return;
    }
    const ds: Dispatch[] = [];
    for (const claimed of claims) {
      if (claimed.kind === "refused") {
        // refused by the claim itself (already ended as a final failure)
        log("error", "dispatch_refused", {
          current_job: claimed.lease ?? null,
          batch,
          reason: claimed.reason,
        });
        continue;
      }
      const d = await accept(sql, claimed, { currentJob: null, job: null, legacy: null });
      if (d !== null) ds.push(d);
    }
    if (ds.length === 0) return;
    const deadlines = ds.map((d) => d.currentJob.deadlineInMs).filter((x): x is number =>
      x !== null
    );
    const deadlineAt = deadlines.length === 0 ? null : asked + Math.min(...deadlines);
    const call = await callTarget(
      batchCallSettings(ds),
      target,
      deadlineAt,
      buildBatchRequest(ds, target),
    );
    const outcomes = batchOutcomes(ds, call);
    const current = await reportBatch(
      sql,
      ds.map((d, i) => ({ currentJob: d.currentJob.id, outcome: outcomes[i] })),
    );
    let failed = 0;
    ds.forEach((d, i) => {
      const outcome = outcomes[i];
      if (!outcome.isSuccessful) failed += 1;
      if (!outcome.isSuccessful || outcome.note !== null || current[i] !== true) {
        log(current[i] === null ? "error" : "warn", "job_reported", {
          current_job: d.currentJob.id,
          job: d.job.id,
          queue: d.queue.name,
          batch,
          status_code: outcome.statusCode,
          successful: outcome.isSuccessful,
          duration_ms: outcome.durationMs,
          error: outcome.error,
          note: outcome.note,
          lease_current: current[i],
        });
      }
    });
    log("info", "dispatch_done", {
      current_job: batch,
      batch,
      jobs: ds.length,
      succeeded: ds.length - failed,
      failed,
      elapsed_ms: Math.round(performance.now() - receivedAt),
    });
  } catch (err) {
    log("error", "run_failed", {
      current_job: batch,
      message: err instanceof Error ? err.message : String(err),
    });
  }
}

export type Env = (name: string) => string | undefined;

export function createHandler(env: Env): (request: Request) => Promise<Response> {
  return async (request: Request): Promise<Response> => {
    const receivedAt = performance.now(); // the platform's wall clock runs from here
    const secret = env("SUPAQUEUE_SECRET") ?? "";
    if (secret === "") {
      log("error", "misconfigured", { missing: "SUPAQUEUE_SECRET" });
      return json(500, { error: "SUPAQUEUE_SECRET is not set for this function" });
    }
    if (!secretMatches(request.headers.get("supaqueue-secret"), secret)) {
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
    const length = request.headers.get("content-length") ?? "";
    if (Number(length) > MAX_DISPATCH_BYTES) return tooLarge();
    let ref: DispatchRef;
    try {
      let text: string;
      if (/^\d+$/.test(length)) {
        // a stated length under the cap: the server reads exactly that much, in one go
        text = await request.text();
      } else {
        const { bytes, truncated } = await readCapped(request.body, MAX_DISPATCH_BYTES);
        if (truncated) return tooLarge();
        text = new TextDecoder().decode(bytes);
      }
      ref = parseRef(text);
    } catch (err) {
      if (err instanceof InvalidDispatch) return json(400, { error: err.message });
      return json(400, { error: "could not read the request body" });
    }
    const { supabaseUrl, serviceRoleKey, dbUrl } = config.config;
    runInBackground(
      ref.batch !== null
        ? runBatch(ref.batch, { supabaseUrl, serviceRoleKey }, dbUrl, receivedAt)
        : runJobs(ref, { supabaseUrl, serviceRoleKey }, dbUrl, receivedAt),
    );
    return json(202, { accepted: true, current_job: ref.currentJob });
  };
}
