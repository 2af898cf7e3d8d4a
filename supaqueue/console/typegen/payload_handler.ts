// The called function's side of a queue's payload_schema (written by `supaqueue gen handler`):
// validates the request body against the queue's schema before your code runs, and answers a bad
// payload with 422 naming the field. 422 is in the engine's default non_retryable_statuses
// (every 4xx but 408 and 429), so the job fails once, with that answer as its error, instead of
// being retried. For Deno / Supabase Edge Functions (npm: imports).
//
//   import { payloadSchemas, type Payloads } from "./supaqueue.gen.ts"; // supaqueue gen types
//   import { payloadHandler } from "./payload_handler.ts";
//   Deno.serve(payloadHandler<Payloads["emails"]>(payloadSchemas["emails"], async (payload) => {
//     await send(payload.to);
//     return Response.json({ sent: true });
//   }));
import { Ajv, type ErrorObject, type ValidateFunction } from "npm:ajv@8.17.1";
import { Ajv2019 } from "npm:ajv@8.17.1/dist/2019.js";
import { Ajv2020 } from "npm:ajv@8.17.1/dist/2020.js";
import addFormats from "npm:ajv-formats@3.0.1";

/** The status a bad payload gets; keep it in the queue's non_retryable_statuses. */
export const REJECT_STATUS = 422;

/** One problem of a payload: where (`payload.address.zip`, `payload.items[2]`) and what. */
export interface PayloadProblem {
  field: string;
  message: string;
}

// The dialects `pulumi preview` accepts (supaqueue/providers/queue/spec.py,
// PAYLOAD_SCHEMA_DIALECTS); none named is 2020-12, as there.
function validatorFor(schema: Record<string, unknown>): ValidateFunction {
  const dialect = String(
    schema.$schema ?? "https://json-schema.org/draft/2020-12/schema",
  );
  // strict: false, so annotations Ajv does not know (x-…, examples) are not an error here when
  // the jsonschema library accepted them at preview.
  const options = { allErrors: true, strict: false };
  const ajv = dialect.includes("draft-07")
    ? new Ajv(options)
    : dialect.includes("2019-09")
    ? new Ajv2019(options)
    : new Ajv2020(options);
  // `format` (email, date-time, uuid…) is checked, as a user writing it expects. `.default`: the
  // plugin is CommonJS, whose default import is the module object in the types.
  addFormats.default(ajv);
  return ajv.compile(schema);
}

function fieldOf(error: ErrorObject): string {
  let field = "payload";
  for (const part of error.instancePath.split("/").slice(1)) {
    const key = part.replaceAll("~1", "/").replaceAll("~0", "~");
    field += /^[0-9]+$/.test(key) ? `[${key}]` : `.${key}`;
  }
  const params = error.params as Record<string, unknown>;
  if (error.keyword === "required") {
    field += `.${String(params.missingProperty)}`;
  }
  if (error.keyword === "additionalProperties") {
    field += `.${String(params.additionalProperty)}`;
  }
  return field;
}

function message(error: ErrorObject): string {
  if (error.keyword === "required") return "is required";
  if (error.keyword === "additionalProperties") {
    return "is not allowed by the queue's schema";
  }
  return error.message ?? error.keyword;
}

/** The problems of `payload` under `schema` (empty when it is valid). */
export function payloadProblems(
  schema: Record<string, unknown>,
  payload: unknown,
): PayloadProblem[] {
  const validate = validatorFor(schema);
  if (validate(payload)) return [];
  return (validate.errors ?? []).map((e) => ({
    field: fieldOf(e),
    message: message(e),
  }));
}

function reject(error: string, problems: PayloadProblem[]): Response {
  return Response.json({ error, problems }, { status: REJECT_STATUS });
}

/**
 * A request handler that validates the JSON body against `schema` (null: any JSON) and calls
 * `handle` with it only when it is valid. A pipeline step's body carries its dependencies'
 * results under `dependency_results`: that key is not part of the payload and is not validated.
 */
export function payloadHandler<P>(
  schema: Record<string, unknown> | null,
  handle: (payload: P, request: Request) => Response | Promise<Response>,
): (request: Request) => Promise<Response> {
  const validate = schema === null ? null : validatorFor(schema); // compiled once
  return async (request: Request): Promise<Response> => {
    let body: unknown;
    try {
      body = JSON.parse(await request.text());
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      return reject(`payload: the request body is not JSON (${why})`, [
        { field: "payload", message: "is not JSON" },
      ]);
    }
    let payload = body;
    if (body !== null && typeof body === "object" && !Array.isArray(body)) {
      const { dependency_results: _, ...rest } = body as Record<
        string,
        unknown
      >;
      if ("dependency_results" in body) payload = rest;
    }
    if (validate !== null && !validate(payload)) {
      const problems = (validate.errors ?? []).map((e) => ({
        field: fieldOf(e),
        message: message(e),
      }));
      const first = problems[0];
      return reject(`${first.field} ${first.message}`, problems);
    }
    return await handle(body as P, request);
  };
}

/** One job of a batch (a queue with `batch_size` > 1), as the called function receives it. */
export interface BatchJob<P> {
  id: string;
  attempt: number;
  payload: P;
}

/** One job's outcome in a batch's answer: status 2xx (default 200) is success with `result`. */
export interface BatchOutcome {
  id: string;
  status?: number;
  result?: unknown;
  error?: string;
  retry_after?: number;
}

/** Thrown by a batch handler's code: that job alone fails with this status (a status in the
 * queue's non_retryable_statuses fails it for good; `retryAfterSeconds` delays its retry). */
export class JobError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly retryAfterSeconds: number | null = null,
  ) {
    super(message);
  }
}

/**
 * A request handler for a batched queue (`batch_size` > 1; its contract:
 * docs/architecture/application-api.md, "Batch contract"): the body is a JSON array of
 * `{id, attempt, payload}`; each payload is validated
 * against `schema` (a bad one fails that job alone with 422, naming the field) and `handle` runs
 * for each valid job, all at once (a batch of N counts N workers). What `handle` returns is the
 * job's result; a `JobError` fails the job with its status, any other error with 500 (retried).
 * The answer is the JSON array of one outcome per job that supaqueue expects.
 */
export function batchHandler<P>(
  schema: Record<string, unknown> | null,
  handle: (payload: P, job: BatchJob<P>, request: Request) => unknown,
): (request: Request) => Promise<Response> {
  const validate = schema === null ? null : validatorFor(schema); // compiled once
  return async (request: Request): Promise<Response> => {
    let body: unknown;
    try {
      body = JSON.parse(await request.text());
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      return Response.json({ error: `the request body is not JSON (${why})` }, { status: 400 });
    }
    if (!Array.isArray(body)) {
      return Response.json(
        { error: "not a batch: the body must be a JSON array of {id, attempt, payload}" },
        { status: 400 },
      );
    }
    const outcomes = await Promise.all(
      (body as BatchJob<unknown>[]).map(async (job): Promise<BatchOutcome> => {
        let payload = job.payload;
        if (payload !== null && typeof payload === "object" && !Array.isArray(payload)) {
          const { dependency_results: _, ...rest } = payload as Record<string, unknown>;
          if ("dependency_results" in payload) payload = rest;
        }
        if (validate !== null && !validate(payload)) {
          const first = (validate.errors ?? [])[0];
          const error = first ? `${fieldOf(first)} ${message(first)}` : "payload is invalid";
          return { id: job.id, status: REJECT_STATUS, error };
        }
        try {
          const result = await handle(job.payload as P, job as BatchJob<P>, request);
          return { id: job.id, result: result ?? null };
        } catch (err) {
          if (err instanceof JobError) {
            return {
              id: job.id,
              status: err.status,
              error: err.message,
              ...(err.retryAfterSeconds === null ? {} : { retry_after: err.retryAfterSeconds }),
            };
          }
          return {
            id: job.id,
            status: 500,
            error: err instanceof Error ? err.message : String(err),
          };
        }
      }),
    );
    return Response.json(outcomes);
  };
}
