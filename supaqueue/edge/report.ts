// The function's database calls over SUPABASE_DB_URL: claim a dispatched lease
// (`supaqueue.claim_current_job`), refuse it (`refuse_current_job`) or report its outcome and
// claim the worker's next job (`report_and_claim`; `end_current_job` without chaining).
// Transient database errors are retried with backoff; nothing secret is ever logged.
import postgres from "postgres";
import type { DispatchRef } from "./dispatch_body.ts";
import type { Outcome } from "./target_call.ts";
import { log } from "./log.ts";
import { literal, type SqlValue } from "./sql_literal.ts";

export type Sql = ReturnType<typeof postgres>;

// `select supaqueue.<fn>(<value>::<type>, …) as <column>`, one round trip (sql_literal.ts says
// why the values are literals). `fn`, `column` and the types are this module's constants.
// Nested in a tagged query, so postgres.js uses the extended protocol, which runs one statement
// and nothing more (a bare `sql.unsafe(text)` would be a simple Query, where `;` starts another).
function call(sql: Sql, fn: string, column: string, args: [SqlValue, string][]) {
  const list = args.map(([value, type]) => `${literal(value)}::${type}`).join(", ");
  return sql`${sql.unsafe(`select supaqueue.${fn}(${list}) as ${column}`)}`;
}

const ATTEMPTS = 5;
const FIRST_DELAY_MS = 250;

let shared: { url: string; sql: Sql } | null = null;

// One small pool per worker instance, reused across requests. `prepare: false` because on
// Supabase the URL may point at a transaction-mode pooler, which cannot keep prepared statements.
export function database(url: string): Sql {
  if (shared && shared.url === url) return shared.sql;
  const sql = postgres(url, {
    max: 4,
    prepare: false,
    idle_timeout: 20,
    connect_timeout: 10,
    onnotice: () => {},
    connection: { application_name: "supaqueue-edge" },
  });
  shared = { url, sql };
  return sql;
}

function sqlState(err: unknown): string | null {
  const code = (err as { code?: unknown }).code;
  return typeof code === "string" && /^[0-9A-Z]{5}$/.test(code) ? code : null;
}

// SQLSTATE classes worth another try: connection problems, resource limits, operator
// intervention (restart), and serialization/deadlock failures. Anything else will not heal.
function isTransient(err: unknown): boolean {
  const code = sqlState(err);
  if (code === null) return true; // network-level
  return ["08", "53", "57", "40"].includes(code.slice(0, 2)) || code === "55P03";
}

function describe(err: unknown): { message: string; code: string | null } {
  const e = err as { message?: unknown };
  const message = typeof e.message === "string" ? e.message : String(err);
  // postgres.js errors can quote the connection target; strip anything URL-shaped with credentials.
  const clean = message.replace(/postgres(?:ql)?:\/\/[^\s'"]+/gi, "<database url>");
  return { message: clean.slice(0, 500), code: sqlState(err) };
}

class Permanent extends Error {
  constructor(readonly failure: unknown) {
    super("permanent database error");
  }
}

// Runs `call`, retrying transient errors. Returns its value, or throws Permanent (after logging
// `event` once per failed try, unless the SQLSTATE is `expected`) when it cannot succeed.
async function withRetries<T>(
  event: string,
  currentJob: string,
  call: () => Promise<T>,
  expected: string[] = [],
): Promise<T> {
  for (let attempt = 1;; attempt++) {
    try {
      return await call();
    } catch (err) {
      const { message, code } = describe(err);
      if (code !== null && expected.includes(code)) throw new Permanent(err);
      const transient = isTransient(err);
      const last = attempt >= ATTEMPTS || !transient;
      log(last ? "error" : "warn", event, {
        current_job: currentJob,
        attempt,
        transient,
        code,
        message,
      });
      if (last) throw new Permanent(err);
      await new Promise((resolve) => setTimeout(resolve, FIRST_DELAY_MS * 2 ** (attempt - 1)));
    }
  }
}

// The database's migrations predate the claim (an upgrade in progress): not an error.
const UNDEFINED_FUNCTION = "42883";

export type Claim =
  | { kind: "claimed"; job: unknown }
  | { kind: "not_current" }
  // `lease`: the refused lease, where the claim names it (a batch's claim does)
  | { kind: "refused"; reason: string; lease?: string }
  // the database has no claim function yet (its migrations are older than this function)
  | { kind: "no_claim_function" }
  | { kind: "failed" };

// What supaqueue.claim_current_job returns (also the `next` of report_and_claim) as a Claim.
function claimOf(claimed: unknown): Claim {
  if (claimed === null || claimed === undefined) return { kind: "not_current" };
  const refused = (claimed as { refused?: unknown }).refused;
  if (typeof refused === "string") {
    const lease = (claimed as { current_job?: { id?: unknown } }).current_job?.id;
    return typeof lease === "string"
      ? { kind: "refused", reason: refused, lease }
      : { kind: "refused", reason: refused };
  }
  return { kind: "claimed", job: claimed };
}

export async function claimCurrentJob(sql: Sql, ref: DispatchRef): Promise<Claim> {
  try {
    const rows = await withRetries(
      "claim_failed",
      ref.currentJob,
      () =>
        call(sql, "claim_current_job", "claimed", [
          [ref.currentJob, "uuid"],
          [ref.attempt, "integer"],
        ]),
      [UNDEFINED_FUNCTION],
    );
    return claimOf(rows[0]?.claimed as unknown);
  } catch (err) {
    if (err instanceof Permanent && sqlState(err.failure) === UNDEFINED_FUNCTION) {
      return { kind: "no_claim_function" };
    }
    return { kind: "failed" };
  }
}

export async function refuseCurrentJob(
  sql: Sql,
  currentJobId: string,
  reason: string,
): Promise<boolean | null> {
  try {
    const rows = await withRetries(
      "refuse_failed",
      currentJobId,
      () =>
        call(sql, "refuse_current_job", "current", [
          [currentJobId, "uuid"],
          [reason, "text"],
        ]),
    );
    return rows[0]?.current === true;
  } catch {
    return null;
  }
}

// SQLSTATEs of a result the database cannot store as jsonb (bad text, too deeply nested):
// the report is then sent again with the result kept as text, so the status is never lost.
function unstorable(err: unknown): boolean {
  const code = sqlState(err) ?? "";
  return code.startsWith("22") || code === "54001";
}

// How far this invocation's chain has got: jobs run (the one being reported included) and its
// age by its own clock. The database decides from these whether the chain goes on.
export interface Chain {
  jobs: number;
  elapsedMs: number;
}

// The answer to a report: whether the lease was still current (null: the report failed) and,
// when the chain goes on, the worker's next job, already claimed (or refused).
export interface Reported {
  current: boolean | null;
  next: Claim | null;
}

async function report(
  sql: Sql,
  currentJobId: string,
  outcome: Outcome,
  chain: Chain | null,
): Promise<Reported> {
  // The outcome as end_current_job takes it; the result is JSON text, cast to jsonb in SQL.
  const ended: [SqlValue, string][] = [
    [currentJobId, "uuid"],
    // _is_complete: false holds the worker while the abandoned call may still run at the target
    [outcome.over, "boolean"],
    [outcome.isSuccessful, "boolean"],
    [outcome.statusCode, "integer"],
    [outcome.responseExcerpt, "text"],
    [outcome.error ?? outcome.note, "text"],
    [outcome.retryAfterSeconds, "numeric"],
    [outcome.result, "jsonb"],
    [outcome.durationMs, "integer"],
  ];
  if (chain === null) {
    const rows = await call(sql, "end_current_job", "current", ended);
    return { current: rows[0]?.current === true, next: null };
  }
  const rows = await call(sql, "report_and_claim", "reported", [
    ...ended,
    [chain.jobs, "integer"],
    [chain.elapsedMs, "bigint"],
  ]);
  const reported = rows[0]?.reported as { current?: unknown; next?: unknown } | undefined;
  const next = reported?.next;
  return {
    current: reported?.current === true,
    next: next === null || next === undefined ? null : claimOf(next),
  };
}

// Reports an outcome; with `chain`, the same call may claim the worker's next job.
export async function reportOutcome(
  sql: Sql,
  currentJobId: string,
  outcome: Outcome,
  chain: Chain | null = null,
): Promise<Reported> {
  let sent = outcome;
  try {
    return await withRetries("report_failed", currentJobId, async () => {
      try {
        return await report(sql, currentJobId, sent, chain);
      } catch (err) {
        if (chain !== null && sqlState(err) === UNDEFINED_FUNCTION) {
          // The function is deployed before the migrations: until they ran, report without
          // chaining (asked again each time, so chains start as soon as they did).
          chain = null;
          return await report(sql, currentJobId, sent, null);
        }
        if (sent.result === null || sent.resultText === null || !unstorable(err)) throw err;
        const { code } = describe(err);
        sent = {
          ...sent,
          result: JSON.stringify(sent.resultText),
          note: `result kept as text: the database could not store it as JSON (${code})`,
        };
        return await report(sql, currentJobId, sent, chain);
      }
    });
  } catch {
    return { current: null, next: null };
  }
}

export async function endCurrentJob(
  sql: Sql,
  currentJobId: string,
  outcome: Outcome,
): Promise<boolean | null> {
  return (await reportOutcome(sql, currentJobId, outcome)).current;
}

// A batch's leases (docs/architecture.md, "Batch delivery"), claimed in one statement: each as
// a Claim (leases no longer current are left out by the database). Null: the claim failed
// (logged); the leases then expire and their jobs are retried, nothing was called.
export async function claimBatch(sql: Sql, batch: string): Promise<Claim[] | null> {
  try {
    const rows = await withRetries(
      "claim_failed",
      batch,
      () => call(sql, "claim_batch", "claimed", [[batch, "uuid"]]),
    );
    const jobs = (rows[0]?.claimed as { jobs?: unknown } | null)?.jobs;
    return Array.isArray(jobs) ? jobs.map(claimOf) : [];
  } catch {
    return null;
  }
}

// JSON text Postgres accepts in jsonb: lone surrogates (an excerpt cut inside a pair) replaced.
function jsonText(value: string | null): string {
  return value === null ? "null" : JSON.stringify(value.toWellFormed());
}

// One report for every lease of a batch (supaqueue.report_batch): the outcomes as a jsonb array,
// each result spliced in as the JSON text it is (never re-serialised: no number is rounded).
// Where the database refuses it (a result it cannot store as jsonb, or no report_batch: an
// upgrade in progress) each lease is reported on its own as a single job would be, with the
// result kept as text if need be. Returns per lease whether it was still current (null: failed).
export async function reportBatch(
  sql: Sql,
  items: { currentJob: string; outcome: Outcome }[],
): Promise<(boolean | null)[]> {
  const text = `[${
    items.map(({ currentJob, outcome: o }) =>
      `{"current_job":${jsonText(currentJob)},"is_complete":${o.over},` +
      `"is_successful":${o.isSuccessful},"status_code":${o.statusCode ?? "null"},` +
      `"response_excerpt":${jsonText(o.responseExcerpt)},"error":${jsonText(o.error ?? o.note)},` +
      `"retry_after_seconds":${o.retryAfterSeconds ?? "null"},"duration_ms":${o.durationMs}` +
      `${o.result === null ? "" : `,"result":${o.result}`}}`
    ).join(",")
  }]`;
  const id = items[0]?.currentJob ?? "";
  try {
    const rows = await withRetries(
      "report_failed",
      id,
      () => call(sql, "report_batch", "reported", [[text, "jsonb"]]),
      [UNDEFINED_FUNCTION],
    );
    const current = rows[0]?.reported;
    if (Array.isArray(current) && current.length === items.length) {
      return current.map((c) => c === true);
    }
    return items.map(() => null);
  } catch (err) {
    const failure = err instanceof Permanent ? err.failure : err;
    if (sqlState(failure) !== UNDEFINED_FUNCTION && !unstorable(failure)) {
      return items.map(() => null);
    }
  }
  const out: (boolean | null)[] = [];
  for (const { currentJob, outcome } of items) {
    out.push((await reportOutcome(sql, currentJob, outcome)).current);
  }
  return out;
}
