// Batch delivery (docs/architecture.md, "Batch delivery"; the called function's contract in
// docs/architecture/application-api.md): the jobs of a batch's leases go to the target in one
// call, as a JSON array `[{"id", "attempt", "payload"}, …]`, and its answer, a JSON array of one
// outcome per job `{"id", "status"?, "result"?, "error"?, "retry_after"?}`, becomes one Outcome
// per job. Each job keeps its own attempt, retry and result; the call's own failure (a non-2xx
// answer, a timeout, a lost connection) is every job's outcome, as it would be for one job.
import type { Dispatch } from "./dispatch_body.ts";
import { isRawNumber, parseExact, storableJsonText } from "./exact_json.ts";
import { parseRetryAfter } from "./retry_after.ts";
import { excerpt, type Outcome, type TargetEnv } from "./target_call.ts";

// Tells the target that the body is a batch (and of how many jobs): `supaqueue gen handler`'s
// helper reads it.
export const BATCH_SIZE_HEADER = "supaqueue-batch-size";
// Beyond N results of max_result_bytes each: room for the array and the outcomes' other keys.
const ANSWER_OVERHEAD_BYTES = 64 * 1024;

export function buildBatchRequest(
  ds: Dispatch[],
  env: TargetEnv,
): { url: string; init: RequestInit } {
  const first = ds[0];
  const base = env.supabaseUrl.replace(/\/+$/, "");
  const headers = new Headers(first.queue.defaultHeaders);
  if (!headers.has("authorization")) headers.set("authorization", `Bearer ${env.serviceRoleKey}`);
  if (!headers.has("content-type")) headers.set("content-type", "application/json");
  headers.set(BATCH_SIZE_HEADER, String(ds.length));
  // The earliest deadline of the batch (its leases are claimed together, so all the same).
  const deadlines = ds.map((d) => d.currentJob.deadline).filter((x): x is string => x !== null)
    .map((x) => Date.parse(x));
  if (deadlines.length > 0) {
    headers.set("supaqueue-deadline", new Date(Math.min(...deadlines)).toISOString());
  }
  // Each payload as the database's text (job.body, with a step's dependency_results), spliced
  // in byte for byte: no number is rounded.
  const body = `[${
    ds.map((d) =>
      `{"id":${JSON.stringify(d.job.id)},"attempt":${d.job.attempts},"payload":${
        d.job.body ?? JSON.stringify(d.job.payload)
      }}`
    ).join(",")
  }]`;
  return {
    url: `${base}/functions/v1/${first.queue.edgeFunctionName}`,
    init: { method: first.queue.method, headers, body, redirect: "manual" },
  };
}

// The dispatch callTarget is given for a batch: the first job's queue settings (the same for
// all) and a cap on the answer that fits every job's result.
export function batchCallSettings(ds: Dispatch[]): Dispatch {
  const first = ds[0];
  const cap = Math.min(ds.length * first.maxResultBytes + ANSWER_OVERHEAD_BYTES, 2 ** 31 - 1);
  return { ...first, maxResultBytes: cap };
}

type Item = Record<string, unknown>;

function isItem(value: unknown): value is Item {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

// A number of the answer (parseExact keeps numbers as their text), else the value itself.
function numeric(value: unknown): unknown {
  return isRawNumber(value) ? Number(value.rawJSON) : value;
}

function clean(text: string): string {
  return text.replaceAll("\u0000", "").toWellFormed();
}

// One job's outcome from its item of the answer.
function itemOutcome(item: Item, call: Outcome, maxResultBytes: number): Outcome {
  const base: Outcome = {
    isSuccessful: false,
    statusCode: null,
    responseExcerpt: excerpt(clean(JSON.stringify(item))),
    error: null,
    retryAfterSeconds: null,
    result: null,
    resultText: null,
    note: null,
    durationMs: call.durationMs,
    over: true,
  };
  const status = numeric(item.status ?? 200);
  if (typeof status !== "number" || !Number.isInteger(status) || status < 100 || status > 599) {
    return { ...base, error: "malformed batch answer: its status must be an integer 100-599" };
  }
  let retryAfter: number | null = null;
  // seconds, as a number or as a Retry-After header's text (seconds or an HTTP date)
  const ra = numeric(item.retry_after);
  if (typeof ra === "number" && Number.isFinite(ra) && ra >= 0) retryAfter = ra;
  else if (typeof ra === "string") retryAfter = parseRetryAfter(ra);
  const ok = status >= 200 && status < 300;
  const out: Outcome = {
    ...base,
    isSuccessful: ok,
    statusCode: status,
    retryAfterSeconds: retryAfter,
  };
  if (!ok) {
    const given = typeof item.error === "string" ? clean(item.error).slice(0, 2000) : null;
    out.error = given ?? `HTTP ${status} in the batch answer`;
  }
  if ("result" in item) {
    const text = JSON.stringify(item.result) ?? "null"; // raw numbers written back as they came
    if (new TextEncoder().encode(text).length > maxResultBytes) {
      out.note = `result not stored: the answer is over ${maxResultBytes} bytes`;
    } else {
      const { json, note } = storableJsonText(text);
      out.result = json;
      out.resultText = clean(text);
      out.note = note;
    }
  }
  return out;
}

// One Outcome per job of `ds`, in that order, from the batch call's Outcome (whose resultText is
// the whole answer when it was JSON).
export function batchOutcomes(ds: Dispatch[], call: Outcome): Outcome[] {
  const none = { result: null, resultText: null, note: null };
  if (!call.isSuccessful) return ds.map(() => ({ ...call, ...none }));
  const failAll = (why: string) =>
    ds.map(() => ({
      ...call,
      ...none,
      isSuccessful: false,
      error: `malformed batch answer: ${why}`,
    }));
  if (call.resultText === null) {
    return failAll(call.note ?? "not a JSON array of outcomes");
  }
  let answer: unknown;
  try {
    answer = parseExact(call.resultText);
  } catch (err) {
    return failAll(`not JSON (${err instanceof Error ? err.message : String(err)})`);
  }
  if (!Array.isArray(answer)) return failAll("not a JSON array of outcomes");
  const byId = new Map<string, Item | "twice">();
  for (const item of answer) {
    if (!isItem(item) || typeof item.id !== "string") continue;
    const id = item.id.toLowerCase();
    byId.set(id, byId.has(id) ? "twice" : item);
  }
  return ds.map((d) => {
    const item = byId.get(d.job.id);
    if (item === undefined || item === "twice") {
      return {
        ...call,
        ...none,
        isSuccessful: false,
        statusCode: null,
        responseExcerpt: null,
        error: item === undefined
          ? `missing from the batch answer (${answer.length} outcomes for ${ds.length} jobs)`
          : "malformed batch answer: the job is answered twice",
      };
    }
    return itemOutcome(item, call, d.maxResultBytes);
  });
}
