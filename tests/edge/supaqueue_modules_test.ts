// Deno unit tests of the pure modules of supaqueue/edge (run by test_deno_units.py).
import { parseRetryAfter } from "../../supaqueue/edge/retry_after.ts";
import { InvalidDispatch, parseDispatch, parseRef } from "../../supaqueue/edge/dispatch_body.ts";
import { buildRequest, callTarget } from "../../supaqueue/edge/target_call.ts";
import { storableJsonText } from "../../supaqueue/edge/exact_json.ts";
import { secretMatches } from "../../supaqueue/edge/secret.ts";
import { batchOutcomes, buildBatchRequest } from "../../supaqueue/edge/batch.ts";
import type { Outcome } from "../../supaqueue/edge/target_call.ts";

function assertEquals(actual: unknown, expected: unknown, what = ""): void {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${what} expected ${e}, got ${a}`);
}

function assertThrows(fn: () => unknown, match: RegExp): void {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof InvalidDispatch)) throw new Error(`wrong error type: ${err}`);
    if (!match.test(err.message)) throw new Error(`message ${err.message} does not match ${match}`);
    return;
  }
  throw new Error(`did not throw ${match}`);
}

const ID = "11111111-1111-4111-8111-111111111111";
const JOB = "22222222-2222-4222-8222-222222222222";
const QUEUE = "33333333-3333-4333-8333-333333333333";

function body(patch: (b: Record<string, Record<string, unknown>>) => void = () => {}): string {
  const b: Record<string, Record<string, unknown>> = {
    current_job: { id: ID, worker: ID, job: JOB, lease_expires_at: "2026-11-28T01:00:00+00:00" },
    job: { id: JOB, queue: QUEUE, payload: { a: 1 }, attempts: 1, dependency_results: {} },
    queue: {
      id: QUEUE,
      name: "q",
      edge_function_name: "fn",
      method: "POST",
      default_headers: {},
      timeout_ms: 1000,
    },
  };
  patch(b);
  return JSON.stringify(b);
}

Deno.test("Retry-After: delay-seconds", () => {
  assertEquals(parseRetryAfter("17"), 17);
  assertEquals(parseRetryAfter(" 0 "), 0);
  assertEquals(parseRetryAfter("1.5"), 1.5);
});

Deno.test("Retry-After: HTTP date, relative to now, never negative", () => {
  const now = new Date("2026-11-28T00:00:00Z");
  assertEquals(parseRetryAfter("Sat, 28 Nov 2026 00:02:00 GMT", now), 120);
  assertEquals(parseRetryAfter("Fri, 27 Nov 2026 23:00:00 GMT", now), 0);
});

Deno.test("Retry-After: absent or garbage is null", () => {
  for (const v of [null, "", "soon", "-5", "12abc", "1e3"]) {
    assertEquals(parseRetryAfter(v), null, `${v}`);
  }
});

Deno.test("dispatch: a valid body parses, method upper-cased, uuids lower-cased", () => {
  const d = parseDispatch(body((b) => {
    b.queue.method = "get";
    b.job.id = JOB.toUpperCase();
    b.current_job.job = JOB;
  }));
  assertEquals(d.queue.method, "GET");
  assertEquals(d.job.id, JOB);
  assertEquals(d.queue.defaultHeaders, {});
});

Deno.test("dispatch: null headers and dependency results are empty objects", () => {
  const d = parseDispatch(body((b) => {
    b.queue.default_headers = null;
    b.job.dependency_results = null;
  }));
  assertEquals(d.queue.defaultHeaders, {});
  assertEquals(d.job.dependencyResults, {});
});

Deno.test("dispatch: malformed bodies are refused with a reason", () => {
  assertThrows(() => parseDispatch("{"), /not valid JSON/);
  assertThrows(() => parseDispatch("[]"), /must be a JSON object/);
  assertThrows(
    () => parseDispatch(body((b) => delete b.current_job)),
    /current_job must be an object/,
  );
  assertThrows(
    () => parseDispatch(body((b) => (b.current_job.id = "nope"))),
    /current_job.id must be a uuid/,
  );
  assertThrows(() => parseDispatch(body((b) => (b.queue.method = "TRACE"))), /queue.method/);
  assertThrows(
    () => parseDispatch(body((b) => (b.queue.edge_function_name = "http://evil/x"))),
    /slug/,
  );
  assertThrows(() => parseDispatch(body((b) => (b.queue.timeout_ms = 0))), /timeout_ms/);
  assertThrows(() => parseDispatch(body((b) => (b.queue.timeout_ms = 1.5))), /timeout_ms/);
  assertThrows(
    () => parseDispatch(body((b) => (b.queue.default_headers = { a: 1 }))),
    /must be a string/,
  );
  assertThrows(
    () => parseDispatch(body((b) => (b.queue.default_headers = { "bad header": "x" }))),
    /not a valid HTTP header/,
  );
  assertThrows(() => parseDispatch(body((b) => (b.current_job.job = ID))), /does not match job.id/);
  assertThrows(() => parseDispatch(body((b) => (b.job.queue = ID))), /does not match queue.id/);
  assertThrows(() => parseDispatch(body((b) => delete b.job.payload)), /payload is missing/);
  assertThrows(() => parseDispatch(body((b) => (b.job.attempts = -1))), /attempts/);
  assertThrows(
    () =>
      parseDispatch(body((b) => {
        b.queue.method = "GET";
        b.job.payload = [1];
      })),
    /must be an object/,
  );
  assertThrows(() => parseDispatch(body((b) => (b.job.dependency_results = { x: 1 }))), /uuids/);
  assertThrows(
    () => parseDispatch(body((b) => (b.current_job.lease_expires_at = "later"))),
    /timestamp/,
  );
});

Deno.test("request: POST sends the payload as JSON with the service-role bearer", () => {
  const d = parseDispatch(body());
  const { url, init } = buildRequest(d, { supabaseUrl: "http://h:1/", serviceRoleKey: "srk" });
  assertEquals(url, "http://h:1/functions/v1/fn");
  const headers = init.headers as Headers;
  assertEquals(headers.get("authorization"), "Bearer srk");
  assertEquals(headers.get("content-type"), "application/json");
  assertEquals(headers.get("supaqueue-job-id"), JOB);
  assertEquals(init.body, JSON.stringify({ a: 1 }));
});

Deno.test("request: GET encodes the payload as query parameters, no body", () => {
  const d = parseDispatch(body((b) => {
    b.queue.method = "GET";
    b.job.payload = { s: "a b&c", n: 2, t: true, skip: null, list: [1, "x"], obj: { k: "v" } };
  }));
  const { url, init } = buildRequest(d, { supabaseUrl: "http://h:1", serviceRoleKey: "srk" });
  assertEquals(
    url,
    "http://h:1/functions/v1/fn?s=a+b%26c&n=2&t=true&list=1&list=x&obj=%7B%22k%22%3A%22v%22%7D",
  );
  assertEquals(init.body, undefined);
  assertEquals((init.headers as Headers).get("content-type"), null);
});

Deno.test("request: a queue's Authorization (any case) replaces the default", () => {
  const d = parseDispatch(
    body((b) => (b.queue.default_headers = { AUTHORIZATION: "Bearer mine", "x-a": "1" })),
  );
  const headers = buildRequest(d, { supabaseUrl: "http://h", serviceRoleKey: "srk" }).init
    .headers as Headers;
  assertEquals(headers.get("authorization"), "Bearer mine");
  assertEquals(headers.get("x-a"), "1");
});

Deno.test("request: dependency results reach a pipeline step beside its payload", () => {
  const d = parseDispatch(body((b) => (b.job.dependency_results = { [ID]: { out: 1 } })));
  const init = buildRequest(d, { supabaseUrl: "http://h", serviceRoleKey: "k" }).init;
  assertEquals(JSON.parse(init.body as string), { a: 1, dependency_results: { [ID]: { out: 1 } } });
});

Deno.test("results: U+0000 is dropped so Postgres jsonb accepts them, with a note", () => {
  const { json, note } = storableJsonText('{"k\\u0000": ["a\\u0000b", 1, null]}');
  assertEquals(json, '{"k": ["ab", 1, null]}');
  assertEquals(note, "result stored with U+0000 removed");
});

Deno.test("results: lone surrogates become U+FFFD; pairs and escaped backslashes are kept", () => {
  const text =
    '{"s": "Great job \\ud83d", "t": "\\ud83d\\ude00", "u": "\\\\u0000", "v": "\\ude00\\\\ud83d"}';
  const { json, note } = storableJsonText(text);
  assertEquals(JSON.parse(json), {
    s: "Great job \ufffd",
    t: "\ud83d\ude00",
    u: "\\u0000",
    v: "\ufffd\\ud83d",
  });
  assertEquals(note, "result stored with lone surrogates replaced by U+FFFD");
  assertEquals(storableJsonText('{"a": [1, "x"]}'), { json: '{"a": [1, "x"]}', note: null });
  // a high surrogate escape at the very end of a string, then another string
  assertEquals(storableJsonText('["\\ud83d", "\\ude00"]').json, '["\\ufffd", "\\ufffd"]');
});

Deno.test("results: numbers are kept as written (no float rounding)", () => {
  const text = '{"big": 12345678901234567890123, "huge": 1e1000, "tiny": 1e-400, "x": 0.1}';
  assertEquals(storableJsonText(text), { json: text, note: null });
});

Deno.test("results: any depth is handled without recursion in our code", () => {
  const depth = 200_000;
  const { json, note } = storableJsonText("[".repeat(depth) + '"\\ud83d"' + "]".repeat(depth));
  assertEquals(json.length, 2 * depth + 8);
  assertEquals(note, "result stored with lone surrogates replaced by U+FFFD");
});

Deno.test("request: the database's body text is sent byte for byte", () => {
  const text = '{"a": 1, "big": 12345678901234567890123, "huge": 1e1000, "tiny": 1e-400}';
  const d = parseDispatch(body((b) => (b.job.body = text)));
  assertEquals(buildRequest(d, { supabaseUrl: "http://h", serviceRoleKey: "k" }).init.body, text);
});

Deno.test("request: GET query parameters keep numbers as written", () => {
  const text = '{"big": 12345678901234567890123, "list": [1e-400, 2], "o": {"n": 1e1000}}';
  const d = parseDispatch(body((b) => {
    b.queue.method = "GET";
    b.job.body = text;
  }));
  const url = new URL(buildRequest(d, { supabaseUrl: "http://h", serviceRoleKey: "k" }).url);
  assertEquals(url.searchParams.get("big"), "12345678901234567890123");
  assertEquals(url.searchParams.getAll("list"), ["1e-400", "2"]);
  assertEquals(url.searchParams.get("o"), '{"n":1e1000}');
});

Deno.test("dispatch reference: only current_job is needed; job and attempt are checked", () => {
  assertEquals(
    parseRef(JSON.stringify({ current_job: { id: ID, job: JOB, attempt: 2 } })),
    { currentJob: ID, job: JOB, attempt: 2, legacy: null, batch: null },
  );
  assertEquals(parseRef(JSON.stringify({ current_job: { id: ID } })).attempt, null);
  assertThrows(() => parseRef(JSON.stringify({ current_job: { id: "x" } })), /uuid/);
  assertThrows(() => parseRef(JSON.stringify({ current_job: { id: ID, attempt: 0 } })), /attempt/);
  assertThrows(() => parseRef(JSON.stringify({ job: {} })), /current_job must be an object/);
  // A whole job as engines before the claim sent it is kept for the upgrade path.
  assertEquals(parseRef(body()).legacy !== null, true);
});

Deno.test("dispatch: the result limit comes from the claim", () => {
  assertEquals(parseDispatch(body()).maxResultBytes, 1024 * 1024);
  const d = parseDispatch(
    JSON.stringify({ ...JSON.parse(body()), limits: { max_result_bytes: 7 } }),
  );
  assertEquals(d.maxResultBytes, 7);
});

Deno.test("secret: constant-time comparison accepts only the exact secret", async () => {
  assertEquals(await secretMatches("s3cret", "s3cret"), true);
  assertEquals(await secretMatches("s3cre", "s3cret"), false);
  assertEquals(await secretMatches("s3cret ", "s3cret"), false);
  assertEquals(await secretMatches(null, "s3cret"), false);
  assertEquals(await secretMatches("", "s3cret"), false);
});

// A response as the runtime's fetch would hand it over, for callTarget without a network.
async function outcomeOf(response: Response) {
  const real = globalThis.fetch;
  globalThis.fetch = () => Promise.resolve(response);
  try {
    return await callTarget(parseDispatch(body()), {
      supabaseUrl: "http://h",
      serviceRoleKey: "k",
    });
  } finally {
    globalThis.fetch = real;
  }
}

Deno.test("outcome: fewer bytes than Content-Length announced fail the attempt", async () => {
  const o = await outcomeOf(
    new Response('{"a": 1', {
      headers: { "content-length": "100", "content-type": "application/json" },
    }),
  );
  assertEquals([o.isSuccessful, o.statusCode, o.result], [false, 200, null]);
  assertEquals(o.error, "answer cut short: 7 of 100 bytes (the connection ended early)");
});

Deno.test("outcome: a body that breaks off while read fails the attempt", async () => {
  const stream = new ReadableStream({
    start(controller) {
      controller.enqueue(new TextEncoder().encode('{"a": '));
      controller.error(new TypeError("connection reset"));
    },
  });
  const o = await outcomeOf(
    new Response(stream, { headers: { "content-type": "application/json" } }),
  );
  assertEquals([o.isSuccessful, o.result], [false, null]);
  assertEquals(
    o.error?.endsWith("connection reset while reading the response body"),
    true,
    o.error ?? "",
  );
});

Deno.test("outcome: a whole answer with its Content-Length is a success, stored as sent", async () => {
  const text = '{"big": 12345678901234567890123}';
  const o = await outcomeOf(
    new Response(text, {
      headers: { "content-length": String(text.length), "content-type": "application/json" },
    }),
  );
  assertEquals([o.isSuccessful, o.result, o.error], [true, text, null]);
});

Deno.test("request: the call carries its deadline (the database's clock) in UTC", () => {
  const d = parseDispatch(body((b) => {
    b.current_job.deadline = "2026-11-28T02:00:01.5+01:00";
    b.current_job.deadline_in_ms = 800;
  }));
  assertEquals(d.currentJob.deadlineInMs, 800);
  const env = { supabaseUrl: "http://h", serviceRoleKey: "k" };
  const headers = buildRequest(d, env).init.headers as Headers;
  assertEquals(headers.get("supaqueue-deadline"), "2026-11-28T01:00:01.500Z");
  // engines before 0017 send none: no header
  const old = buildRequest(parseDispatch(body()), env).init.headers as Headers;
  assertEquals(old.get("supaqueue-deadline"), null);
  assertThrows(
    () => parseDispatch(body((b) => (b.current_job.deadline_in_ms = -1))),
    /deadline_in_ms/,
  );
});

// --- batch delivery (batch.ts) ---------------------------------------------------------------

const JOB2 = "44444444-4444-4444-8444-444444444444";
const JOB3 = "55555555-5555-4555-8555-555555555555";
const JOB4 = "66666666-6666-4666-8666-666666666666";

function batchJob(id: string, text: string) {
  return parseDispatch(body((b) => {
    b.current_job.job = id;
    b.current_job.deadline = "2026-11-28T01:00:00.000Z";
    b.job.id = id;
    b.job.body = text;
  }));
}

function answered(text: string, status = 200): Outcome {
  return {
    isSuccessful: status >= 200 && status < 300,
    statusCode: status,
    responseExcerpt: text.slice(0, 2048),
    error: status >= 200 && status < 300 ? null : `HTTP ${status}`,
    retryAfterSeconds: status === 429 ? 3 : null,
    result: text,
    resultText: text,
    note: null,
    durationMs: 7,
    over: true,
  };
}

Deno.test("batch reference: {batch: {id}} names the batch to claim", () => {
  assertEquals(parseRef(JSON.stringify({ batch: { id: ID } })), {
    currentJob: ID,
    job: null,
    attempt: null,
    legacy: null,
    batch: ID,
  });
  assertThrows(() => parseRef(JSON.stringify({ batch: { id: "x" } })), /batch.id must be a uuid/);
});

Deno.test("batch request: a JSON array of the jobs' exact bodies, with the batch's headers", async () => {
  const ds = [batchJob(JOB, '{"big": 12345678901234567890123}'), batchJob(JOB2, "[1e1000]")];
  const { url, init } = buildBatchRequest(ds, { supabaseUrl: "http://h/", serviceRoleKey: "k" });
  assertEquals(url, "http://h/functions/v1/fn");
  assertEquals(
    init.body,
    `[{"id":"${JOB}","attempt":1,"payload":{"big": 12345678901234567890123}},` +
      `{"id":"${JOB2}","attempt":1,"payload":[1e1000]}]`,
  );
  const headers = new Headers(init.headers);
  assertEquals(headers.get("supaqueue-batch-size"), "2");
  assertEquals(headers.get("supaqueue-deadline"), "2026-11-28T01:00:00.000Z");
  assertEquals(headers.get("supaqueue-job-id"), null);
  assertEquals(headers.get("authorization"), "Bearer k");
  await Promise.resolve();
});

Deno.test("batch answer: one outcome per job; missing, twice and bad status fail only that job", () => {
  const ds = [JOB, JOB2, JOB3, JOB4].map((id) => batchJob(id, "{}"));
  const answer = JSON.stringify([
    { id: JOB, result: { n: 1 } },
    { id: JOB2.toUpperCase(), status: 503, error: "busy", retry_after: 2 },
    { id: JOB3, status: 1000 },
    { id: "77777777-7777-4777-8777-777777777777", result: 1 },
  ]).replace('{"n":1}', '{"n":12345678901234567890123}');
  const [one, two, three, four] = batchOutcomes(ds, answered(answer));
  assertEquals([one.isSuccessful, one.statusCode, one.result], [
    true,
    200,
    '{"n":12345678901234567890123}',
  ]);
  assertEquals([two.isSuccessful, two.statusCode, two.error, two.retryAfterSeconds], [
    false,
    503,
    "busy",
    2,
  ]);
  assertEquals([three.isSuccessful, three.error], [
    false,
    "malformed batch answer: its status must be an integer 100-599",
  ]);
  assertEquals([four.isSuccessful, four.statusCode, four.error], [
    false,
    null,
    "missing from the batch answer (4 outcomes for 4 jobs)",
  ]);
  const [twice] = batchOutcomes(
    [ds[0]],
    answered(JSON.stringify([{ id: JOB }, { id: JOB, status: 500 }])),
  );
  assertEquals(twice.error, "malformed batch answer: the job is answered twice");
});

Deno.test("batch answer: a failed call or an answer that is no array fails every job alike", () => {
  const ds = [JOB, JOB2].map((id) => batchJob(id, "{}"));
  const limited = batchOutcomes(ds, answered('{"error": "slow down"}', 429));
  for (const o of limited) {
    assertEquals([o.isSuccessful, o.statusCode, o.retryAfterSeconds, o.result], [
      false,
      429,
      3,
      null,
    ]);
  }
  for (const o of batchOutcomes(ds, answered('{"ok": true}'))) {
    assertEquals([o.isSuccessful, o.statusCode, o.error], [
      false,
      200,
      "malformed batch answer: not a JSON array of outcomes",
    ]);
  }
  const timedOut = { ...answered("", 200), isSuccessful: false, over: false, resultText: null };
  for (const o of batchOutcomes(ds, timedOut)) assertEquals(o.over, false); // workers held
});
