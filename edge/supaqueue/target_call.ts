// Calls the queue's target function for one job and turns whatever happens
// (any status, a non-JSON body, a timeout, a refused connection) into an Outcome.
// Never throws: every failure is an outcome the engine can retry or record.
import type { Dispatch, JsonValue } from "./dispatch_body.ts";
import { readCapped } from "./capped_read.ts";
import { parseRetryAfter } from "./retry_after.ts";

export interface Outcome {
  isSuccessful: boolean;
  statusCode: number | null;
  responseExcerpt: string | null;
  error: string | null;
  retryAfterSeconds: number | null;
  result: JsonValue | null;
  durationMs: number;
}

export interface TargetEnv {
  supabaseUrl: string;
  serviceRoleKey: string;
}

const EXCERPT_CHARS = 2048;
// Bodies beyond this are not kept whole: the excerpt still comes, the JSON result does not.
const MAX_BODY_BYTES = 1024 * 1024;
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

function queryString(payload: JsonValue): string {
  const params = new URLSearchParams();
  if (payload !== null && isObject(payload)) {
    for (const [key, value] of Object.entries(payload)) {
      if (value === null) continue;
      if (Array.isArray(value) && value.every((v) => v === null || typeof v !== "object")) {
        for (const item of value) if (item !== null) params.append(key, String(item));
      } else if (typeof value === "object") {
        params.append(key, JSON.stringify(value));
      } else {
        params.append(key, String(value));
      }
    }
  }
  const text = params.toString();
  return text === "" ? "" : `?${text}`;
}

export function buildRequest(d: Dispatch, env: TargetEnv): { url: string; init: RequestInit } {
  const base = env.supabaseUrl.replace(/\/+$/, "");
  const payload = payloadWithDependencies(d);
  const method = d.queue.method;
  const hasBody = BODY_METHODS.has(method);
  const url = `${base}/functions/v1/${d.queue.edgeFunctionName}${
    hasBody ? "" : queryString(payload)
  }`;

  const headers = new Headers(d.queue.defaultHeaders);
  if (!headers.has("authorization")) headers.set("authorization", `Bearer ${env.serviceRoleKey}`);
  if (hasBody && !headers.has("content-type")) headers.set("content-type", "application/json");
  // Lets a target deduplicate retries of the same job and see which attempt this is.
  headers.set("supaqueue-job-id", d.job.id);
  headers.set("supaqueue-attempt", String(d.job.attempts));

  return {
    url,
    init: {
      method,
      headers,
      body: hasBody ? JSON.stringify(payload) : undefined,
      redirect: "manual",
    },
  };
}

// Postgres text and jsonb cannot hold U+0000; drop it rather than fail the report.
function withoutNul(text: string): string {
  return text.includes("\u0000") ? text.replaceAll("\u0000", "") : text;
}

export function pgSafeJson(value: JsonValue): JsonValue {
  if (typeof value === "string") return withoutNul(value);
  if (Array.isArray(value)) return value.map(pgSafeJson);
  if (isObject(value)) {
    const out: JsonObject = {};
    for (const [key, item] of Object.entries(value)) out[withoutNul(key)] = pgSafeJson(item);
    return out;
  }
  return value;
}

function excerpt(text: string): string {
  let cut = text.slice(0, EXCERPT_CHARS);
  const last = cut.charCodeAt(cut.length - 1);
  if (last >= 0xd800 && last <= 0xdbff) cut = cut.slice(0, -1); // half a surrogate pair
  return withoutNul(cut);
}

function jsonResult(text: string, contentType: string | null): JsonValue | null {
  const trimmed = text.trim();
  const looksJson = /json/i.test(contentType ?? "") || /^[[{]/.test(trimmed);
  if (!looksJson || trimmed === "") return null;
  try {
    return pgSafeJson(JSON.parse(trimmed) as JsonValue);
  } catch {
    return null;
  }
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

export async function callTarget(d: Dispatch, env: TargetEnv): Promise<Outcome> {
  const { url, init } = buildRequest(d, env);
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  let response: Response;
  try {
    response = await fetch(url, { ...init, signal: AbortSignal.timeout(d.queue.timeoutMs) });
  } catch (err) {
    return {
      isSuccessful: false,
      statusCode: null,
      responseExcerpt: null,
      error: describeError(err, d.queue.timeoutMs, url),
      retryAfterSeconds: null,
      result: null,
      durationMs: elapsed(),
    };
  }
  const status = response.status;
  const retryAfterSeconds = parseRetryAfter(response.headers.get("retry-after"));
  let text = "";
  let truncated = false;
  let bodyError: string | null = null;
  try {
    const read = await readCapped(response.body, MAX_BODY_BYTES);
    truncated = read.truncated;
    text = new TextDecoder().decode(read.bytes);
  } catch (err) {
    bodyError = `${describeError(err, d.queue.timeoutMs, url)} while reading the response body`;
  }
  const ok = status >= 200 && status < 300 && bodyError === null;
  return {
    isSuccessful: ok,
    statusCode: status,
    responseExcerpt: excerpt(text),
    error: bodyError ??
      (ok ? null : `HTTP ${status}${response.statusText ? ` ${response.statusText}` : ""}`),
    retryAfterSeconds,
    result: truncated || bodyError !== null
      ? null
      : jsonResult(text, response.headers.get("content-type")),
    durationMs: elapsed(),
  };
}
