// Reports one outcome with `select supaqueue.end_current_job(...)` over SUPABASE_DB_URL.
// Transient database errors are retried with backoff; nothing secret is ever logged.
import postgres from "postgres";
import type { Outcome } from "./target_call.ts";
import { log } from "./log.ts";

export type Sql = ReturnType<typeof postgres>;

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

// SQLSTATE classes worth another try: connection problems, resource limits, operator
// intervention (restart), and serialization/deadlock failures. Anything else will not heal.
function isTransient(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  if (typeof code !== "string" || !/^[0-9A-Z]{5}$/.test(code)) return true; // network-level
  return ["08", "53", "57", "40"].includes(code.slice(0, 2)) || code === "55P03";
}

function describe(err: unknown): { message: string; code: string | null } {
  const e = err as { message?: unknown; code?: unknown };
  const message = typeof e.message === "string" ? e.message : String(err);
  // postgres.js errors can quote the connection target; strip anything URL-shaped with credentials.
  const clean = message.replace(/postgres(?:ql)?:\/\/[^\s'"]+/gi, "<database url>");
  return { message: clean.slice(0, 500), code: typeof e.code === "string" ? e.code : null };
}

export async function endCurrentJob(
  sql: Sql,
  currentJobId: string,
  outcome: Outcome,
): Promise<boolean | null> {
  const result = outcome.result === null ? null : JSON.stringify(outcome.result);
  for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
    try {
      // jsonb goes over the wire as text and is cast in SQL, so postgres.js never re-encodes it.
      const rows = await sql`
        select supaqueue.end_current_job(
          ${currentJobId}::uuid, true, ${outcome.isSuccessful}::boolean,
          ${outcome.statusCode}::integer, ${outcome.responseExcerpt}::text, ${outcome.error}::text,
          ${outcome.retryAfterSeconds}::numeric, ${result}::text::jsonb,
          ${outcome.durationMs}::integer
        ) as current`;
      return rows[0]?.current === true;
    } catch (err) {
      const { message, code } = describe(err);
      const transient = isTransient(err);
      const last = attempt === ATTEMPTS || !transient;
      log(last ? "error" : "warn", "report_failed", {
        current_job: currentJobId,
        attempt,
        transient,
        code,
        message,
      });
      if (last) return null;
      await new Promise((resolve) => setTimeout(resolve, FIRST_DELAY_MS * 2 ** (attempt - 1)));
    }
  }
  return null;
}
