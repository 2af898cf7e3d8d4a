// What the function receives (docs/architecture.md, "Dispatch body"): pg_net's body carries only
// references to a lease, `{"current_job": {"id", "job", "attempt"}}`, or for a batched queue to
// a batch of leases, `{"batch": {"id"}}` (supaqueue.claim_batch claims them all); the claim
// (`supaqueue.claim_current_job`) returns the job to run in the shape of `Dispatch`.
// Both are validated strictly; unknown extra keys are ignored so the engine may add fields.
export type JsonValue =
  | null
  | boolean
  | number
  | string
  | JsonValue[]
  | { [key: string]: JsonValue };

export type HttpMethod = "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
export const METHODS: readonly HttpMethod[] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

// References to one lease. `legacy` is a whole job as engines before the claim sent it
// (run only while the database has no claim function yet: an upgrade in progress).
export interface DispatchRef {
  currentJob: string;
  job: string | null;
  attempt: number | null;
  legacy: unknown;
  // A batch's id (= `currentJob`, its first lease's): claim every lease of it (batch.ts).
  batch: string | null;
}

export interface Dispatch {
  currentJob: {
    id: string;
    worker: string;
    job: string;
    leaseExpiresAt: string;
    // The call's deadline on the database's clock (claimed_at + timeout_ms) and the time left to
    // it when the claim was answered; null from engines before 0017.
    deadline: string | null;
    deadlineInMs: number | null;
  };
  job: {
    id: string;
    queue: string;
    payload: JsonValue;
    attempts: number;
    dependencyResults: Record<string, JsonValue>;
    // The JSON text to send (dependency results included), as Postgres renders it: sent as is,
    // so no number is ever rounded. Null from a database older than migration 0018.
    body: string | null;
  };
  queue: {
    id: string;
    name: string;
    edgeFunctionName: string;
    method: HttpMethod;
    defaultHeaders: Record<string, string>;
    timeoutMs: number;
  };
  // Bytes of a target's answer kept as the job's result (supaqueue.max_result_bytes()).
  maxResultBytes: number;
}

// What engines without `limits` in their claim kept (then a constant in target_call.ts).
const LEGACY_MAX_RESULT_BYTES = 1024 * 1024;

export class InvalidDispatch extends Error {}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// A function slug, never a URL: no slashes, dots, query or scheme can get through.
export const SLUG = /^[A-Za-z][A-Za-z0-9_-]{0,62}$/;
// The queue's limits as the SQL schema states them (supaqueue.queue's constraints, sql/0008);
// tests/engine/test_queue_limits.py fails when these drift from it. This function's own wall
// clock is 400 s on paid plans: a call may take 390 s, 10 s stay to report its outcome.
export const MAX_TIMEOUT_MS = 390_000;

type Obj = Record<string, unknown>;

function isObject(value: unknown): value is Obj {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function object(parent: Obj, key: string, path: string): Obj {
  const value = parent[key];
  if (!isObject(value)) throw new InvalidDispatch(`${path}${key} must be an object`);
  return value;
}

function uuid(parent: Obj, key: string, path: string): string {
  const value = parent[key];
  if (typeof value !== "string" || !UUID.test(value)) {
    throw new InvalidDispatch(`${path}${key} must be a uuid`);
  }
  return value.toLowerCase();
}

function integer(parent: Obj, key: string, path: string, min: number, max: number): number {
  const value = parent[key];
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new InvalidDispatch(`${path}${key} must be an integer between ${min} and ${max}`);
  }
  return value;
}

function timestamp(parent: Obj, key: string, path: string): string {
  const value = parent[key];
  if (typeof value !== "string" || Number.isNaN(Date.parse(value))) {
    throw new InvalidDispatch(`${path}${key} must be a timestamp`);
  }
  return value;
}

function headers(value: unknown): Record<string, string> {
  if (value === null || value === undefined) return {};
  if (!isObject(value)) throw new InvalidDispatch("queue.default_headers must be an object");
  const out: Record<string, string> = {};
  for (const [name, headerValue] of Object.entries(value)) {
    if (typeof headerValue !== "string") {
      throw new InvalidDispatch(`queue.default_headers.${name} must be a string`);
    }
    try {
      new Headers([[name, headerValue]]);
    } catch {
      throw new InvalidDispatch(`queue.default_headers.${name} is not a valid HTTP header`);
    }
    out[name] = headerValue;
  }
  return out;
}

function dependencyResults(value: unknown): Record<string, JsonValue> {
  if (value === null || value === undefined) return {};
  if (!isObject(value)) throw new InvalidDispatch("job.dependency_results must be an object");
  for (const key of Object.keys(value)) {
    if (!UUID.test(key)) throw new InvalidDispatch("job.dependency_results keys must be uuids");
  }
  return value as Record<string, JsonValue>;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new InvalidDispatch("body is not valid JSON");
  }
}

function bodyText(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  if (typeof value !== "string") throw new InvalidDispatch("job.body must be a string");
  return value;
}

export function parseRef(text: string): DispatchRef {
  const raw = parseJson(text);
  if (!isObject(raw)) throw new InvalidDispatch("body must be a JSON object");
  if ("batch" in raw) {
    const batch = uuid(object(raw, "batch", ""), "id", "batch.");
    return { currentJob: batch, job: null, attempt: null, legacy: null, batch };
  }
  const cj = object(raw, "current_job", "");
  const job = "job" in cj ? uuid(cj, "job", "current_job.") : null;
  const attempt = "attempt" in cj ? integer(cj, "attempt", "current_job.", 1, 1_000_000) : null;
  const legacy = isObject(raw.job) && isObject(raw.queue) ? raw : null;
  return { currentJob: uuid(cj, "id", "current_job."), job, attempt, legacy, batch: null };
}

// A claimed job (an object from the database) or, for the legacy path, a whole old body.
export function parseDispatch(value: unknown): Dispatch {
  const raw = typeof value === "string" ? parseJson(value) : value;
  if (!isObject(raw)) throw new InvalidDispatch("body must be a JSON object");

  const cj = object(raw, "current_job", "");
  const job = object(raw, "job", "");
  const queue = object(raw, "queue", "");

  const method = typeof queue.method === "string" ? queue.method.toUpperCase() : "";
  if (!(METHODS as readonly string[]).includes(method)) {
    throw new InvalidDispatch(`queue.method must be one of ${METHODS.join(", ")}`);
  }
  const slug = queue.edge_function_name;
  if (typeof slug !== "string" || !SLUG.test(slug)) {
    throw new InvalidDispatch("queue.edge_function_name must be a function slug");
  }
  if (typeof queue.name !== "string") throw new InvalidDispatch("queue.name must be a string");
  if (!("payload" in job)) throw new InvalidDispatch("job.payload is missing");

  const dispatch: Dispatch = {
    currentJob: {
      id: uuid(cj, "id", "current_job."),
      worker: uuid(cj, "worker", "current_job."),
      job: uuid(cj, "job", "current_job."),
      leaseExpiresAt: timestamp(cj, "lease_expires_at", "current_job."),
      deadline: cj.deadline === undefined || cj.deadline === null
        ? null
        : timestamp(cj, "deadline", "current_job."),
      deadlineInMs: cj.deadline_in_ms === undefined || cj.deadline_in_ms === null
        ? null
        : integer(cj, "deadline_in_ms", "current_job.", 0, Number.MAX_SAFE_INTEGER),
    },
    job: {
      id: uuid(job, "id", "job."),
      queue: uuid(job, "queue", "job."),
      payload: job.payload as JsonValue,
      attempts: integer(job, "attempts", "job.", 0, 1_000_000),
      dependencyResults: dependencyResults(job.dependency_results),
      body: bodyText(job.body),
    },
    queue: {
      id: uuid(queue, "id", "queue."),
      name: queue.name,
      edgeFunctionName: slug,
      method: method as HttpMethod,
      defaultHeaders: headers(queue.default_headers),
      timeoutMs: integer(queue, "timeout_ms", "queue.", 1, MAX_TIMEOUT_MS),
    },
    maxResultBytes: isObject(raw.limits)
      ? integer(raw.limits, "max_result_bytes", "limits.", 0, 2 ** 31 - 1)
      : LEGACY_MAX_RESULT_BYTES,
  };
  if (dispatch.currentJob.job !== dispatch.job.id) {
    throw new InvalidDispatch("current_job.job does not match job.id");
  }
  if (dispatch.job.queue !== dispatch.queue.id) {
    throw new InvalidDispatch("job.queue does not match queue.id");
  }
  const payload = dispatch.job.payload;
  if ((method === "GET" || method === "DELETE") && payload !== null && !isObject(payload)) {
    throw new InvalidDispatch(`job.payload must be an object (or null) for ${method}`);
  }
  return dispatch;
}
