// Calls the queue's target function for one job and turns whatever happens
// (any status, a non-JSON body, a timeout, a refused connection) into an Outcome.
// Never throws: every failure is an outcome the engine can retry or record.
import type { Dispatch, JsonValue } from "./dispatch_body.ts";
import { readCapped } from "./capped_read.ts";
import { isRawNumber, parseExact, scalarText, storableJsonText } from "./exact_json.ts";
import { parseRetryAfter } from "./retry_after.ts";

export interface Outcome {
  isSuccessful: boolean;
  statusCode: number | null;
  responseExcerpt: string | null;
  error: string | null;
  retryAfterSeconds: number | null;
  // The answer as JSON text that Postgres jsonb accepts, or null (not JSON, too large).
  result: string | null;
  // The answer's text, kept (as a JSON string) if the database refuses `result` after all.
  resultText: string | null;
  // Why the result is not stored exactly as sent; recorded in the attempt's `error`.
  note: string | null;
  durationMs: number;
  // The call is over at the target: its answer was read whole, or it never started (or its
  // connection was refused). False: abandoned (deadline, lost connection, cut answer), it may
  // still be running there, and the database holds its worker (docs/architecture.md,
  // "Concurrency at the target").
  over: boolean;
}

export interface TargetEnv {
  supabaseUrl: string;
  serviceRoleKey: string;
}

const EXCERPT_CHARS = 2048;
const BODY_METHODS = new Set(["POST", "PUT", "PATCH"]);

type JsonObject = { [key: string]: JsonValue };

function isObject(value: JsonValue): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

// Pipeline steps see their dependencies' results under `dependency_results`, beside their
// own payload fields; a payload that already has that key keeps its own value.
function payloadWithDependencies(d: Dispatch): JsonValue {
  const deps = d.job.dependencyResults;
  const payload = d.job.payload;
  if (Object.keys(deps).length === 0) return payload;
  if (payload === null) return { dependency_results: deps };
  if (isObject(payload) && !("dependency_results" in payload)) {
    return { ...payload, dependency_results: deps };
  }
  return payload;
}

// A scalar for the query: a string, boolean or number (kept as written: parseExact).
function isScalar(v: unknown): boolean {
  return v === null || typeof v !== "object" || isRawNumber(v);
}

function queryString(payload: JsonValue): string {
  const params = new URLSearchParams();
  if (payload !== null && isObject(payload)) {
    for (const [key, value] of Object.entries(payload)) {
      if (value === null) continue;
      if (Array.isArray(value) && value.every(isScalar)) {
        for (const item of value) if (item !== null) params.append(key, scalarText(item));
      } else if (!isScalar(value)) {
        params.append(key, JSON.stringify(value));
      } else {
        params.append(key, scalarText(value));
      }
    }
  }
  const text = params.toString();
  return text === "" ? "" : `?${text}`;
}

export function buildRequest(d: Dispatch, env: TargetEnv): { url: string; init: RequestInit } {
  const base = env.supabaseUrl.replace(/\/+$/, "");
  const method = d.queue.method;
  const hasBody = BODY_METHODS.has(method);
  // The database's text when it sends one (0018): the payload exactly as stored. Older
  // databases send only the parsed payload (numbers beyond a double are rounded there).
  const body = d.job.body ?? JSON.stringify(payloadWithDependencies(d));
  const url = `${base}/functions/v1/${d.queue.edgeFunctionName}${
    hasBody ? "" : queryString(
      (d.job.body === null ? payloadWithDependencies(d) : parseExact(body)) as JsonValue,
    )
  }`;

  const headers = new Headers(d.queue.defaultHeaders);
  if (!headers.has("authorization")) headers.set("authorization", `Bearer ${env.serviceRoleKey}`);
  if (hasBody && !headers.has("content-type")) headers.set("content-type", "application/json");
  // Lets a target deduplicate retries of the same job and see which attempt this is.
  headers.set("supaqueue-job-id", d.job.id);
  headers.set("supaqueue-attempt", String(d.job.attempts));
  // When the dispatcher stops waiting (the database's clock): work started after it is wasted.
  if (d.currentJob.deadline !== null) {
    headers.set("supaqueue-deadline", new Date(Date.parse(d.currentJob.deadline)).toISOString());
  }

  return {
    url,
    init: {
      method,
      headers,
      body: hasBody ? body : undefined,
      redirect: "manual",
    },
  };
}

// Postgres text and jsonb cannot hold U+0000; drop it rather than fail the report.
function withoutNul(text: string): string {
  return text.includes("\u0000") ? text.replaceAll("\u0000", "") : text;
}

export function excerpt(text: string): string {
  let cut = text.slice(0, EXCERPT_CHARS);
  const last = cut.charCodeAt(cut.length - 1);
  if (last >= 0xd800 && last <= 0xdbff) cut = cut.slice(0, -1); // half a surrogate pair
  return withoutNul(cut);
}

type Result = Pick<Outcome, "result" | "resultText" | "note">;

function jsonResult(text: string, contentType: string | null, truncated: number | null): Result {
  const trimmed = text.trim();
  const looksJson = /json/i.test(contentType ?? "") || /^[[{]/.test(trimmed);
  const none = { result: null, resultText: null, note: null };
  if (!looksJson || trimmed === "") return none;
  if (truncated !== null) {
    return { ...none, note: `result not stored: the answer is over ${truncated} bytes` };
  }
  try {
    JSON.parse(trimmed); // only to know it is JSON: the text itself is stored (no rounding)
  } catch (err) {
    if (err instanceof RangeError) {
      // Too deep even for this runtime: keep the text.
      const resultText = withoutNul(trimmed).toWellFormed();
      return {
        result: JSON.stringify(resultText),
        resultText,
        note: "result kept as text: nested too deeply to store as JSON",
      };
    }
    return none; // not JSON after all: the excerpt has it
  }
  const resultText = withoutNul(trimmed).toWellFormed();
  const { json, note } = storableJsonText(trimmed);
  return { result: json, resultText, note };
}

function describeError(err: unknown, timeoutMs: number, url: string): string {
  if (err instanceof DOMException && (err.name === "TimeoutError" || err.name === "AbortError")) {
    return `Timeout of ${timeoutMs} ms reached`;
  }
  // Deno says only "fetch failed"; the reason (refused, DNS, TLS) is in the cause chain.
  const parts: string[] = [];
  for (let e: unknown = err, depth = 0; e !== undefined && depth < 4; depth++) {
    parts.push(e instanceof Error ? e.message : String(e));
    e = e instanceof Error ? e.cause : undefined;
  }
  const message = parts.join(": ");
  // The query string carries the job payload; keep it out of stored error text.
  const bare = url.split("?")[0];
  return withoutNul(`request failed: ${message.replaceAll(url, bare)}`).slice(0, EXCERPT_CHARS);
}

// A refused connection delivered nothing: the call is over before it began.
const REFUSED = /connection refused|ECONNREFUSED|os error 111/i;

// `deadlineAt`: the call's deadline on this runtime's monotonic clock (performance.now()), no
// later than the database's (handler.ts counts the claim's `deadline_in_ms` from when it sent the
// claim). No call starts past it, and the call is abandoned at it.
// `request`: what to send instead of `d`'s own request (a batch's, batch.ts); `d` then gives only
// the timeout and the cap on the answer read.
export async function callTarget(
  d: Dispatch,
  env: TargetEnv,
  deadlineAt: number | null = null,
  request: { url: string; init: RequestInit } | null = null,
): Promise<Outcome> {
  const { url, init } = request ?? buildRequest(d, env);
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  let waitMs = d.queue.timeoutMs;
  if (deadlineAt !== null) {
    const left = Math.floor(deadlineAt - started);
    if (left <= 0) {
      // Checked right before the call: its attempt may be about to be failed and retried.
      return {
        isSuccessful: false,
        statusCode: null,
        responseExcerpt: null,
        error:
          `not started: the deadline passed ${-left} ms before the call (timeout ${d.queue.timeoutMs} ms from the claim)`,
        retryAfterSeconds: null,
        result: null,
        resultText: null,
        note: null,
        durationMs: 0,
        over: true,
      };
    }
    waitMs = Math.min(waitMs, left);
  }
  let response: Response;
  try {
    response = await fetch(url, { ...init, signal: AbortSignal.timeout(waitMs) });
  } catch (err) {
    const error = describeError(err, d.queue.timeoutMs, url);
    return {
      isSuccessful: false,
      statusCode: null,
      responseExcerpt: null,
      error,
      retryAfterSeconds: null,
      result: null,
      resultText: null,
      note: null,
      durationMs: elapsed(),
      over: REFUSED.test(error),
    };
  }
  const status = response.status;
  const retryAfterSeconds = parseRetryAfter(response.headers.get("retry-after"));
  let text = "";
  let truncated = false;
  let bodyError: string | null = null;
  try {
    const read = await readCapped(response.body, d.maxResultBytes);
    truncated = read.truncated;
    text = new TextDecoder().decode(read.bytes);
    // An answer cut short (the target or a proxy reset mid-body) is a failed attempt, never a
    // success with half a result: fewer bytes than announced (where the runtime did not
    // decompress, so the header counts the bytes read).
    const announced = response.headers.get("content-length");
    const encoding = (response.headers.get("content-encoding") ?? "identity").toLowerCase();
    if (
      !truncated && announced !== null && /^\d+$/.test(announced) && encoding === "identity" &&
      read.bytes.length < Number(announced)
    ) {
      bodyError = `answer cut short: ${read.bytes.length} of ${announced} bytes ` +
        "(the connection ended early)";
    }
  } catch (err) {
    bodyError = `${describeError(err, d.queue.timeoutMs, url)} while reading the response body`;
  }
  const ok = status >= 200 && status < 300 && bodyError === null;
  const result: Result = bodyError !== null
    ? { result: null, resultText: null, note: null }
    : jsonResult(text, response.headers.get("content-type"), truncated ? d.maxResultBytes : null);
  return {
    isSuccessful: ok,
    statusCode: status,
    responseExcerpt: excerpt(text),
    error: bodyError ??
      (ok ? null : `HTTP ${status}${response.statusText ? ` ${response.statusText}` : ""}`),
    retryAfterSeconds,
    ...result,
    durationMs: elapsed(),
    over: bodyError === null,
  };
}
