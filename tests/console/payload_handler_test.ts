// The payload handler (supaqueue/console/typegen/payload_handler.ts) behind a real HTTP server on
// loopback: run by tests/console/test_gen_types.py with `deno test --allow-net`.
import {
  batchHandler,
  JobError,
  payloadHandler,
  payloadProblems,
  REJECT_STATUS,
} from "../../supaqueue/console/typegen/payload_handler.ts";

const schema = {
  type: "object",
  properties: {
    to: { type: "string", minLength: 3 },
    address: {
      type: "object",
      properties: { zip: { type: "integer" } },
      required: ["zip"],
    },
    tags: { type: "array", items: { type: "string" } },
  },
  required: ["to"],
  additionalProperties: false,
};

function assertEquals(actual: unknown, expected: unknown): void {
  if (JSON.stringify(actual) !== JSON.stringify(expected)) {
    throw new Error(
      `expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`,
    );
  }
}

async function post(
  body: string,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const handled: unknown[] = [];
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    payloadHandler<{ to: string }>(schema, (payload) => {
      handled.push(payload);
      return Response.json({ sent: payload.to });
    }),
  );
  try {
    const response = await fetch(`http://127.0.0.1:${server.addr.port}/`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
    });
    const json = await response.json();
    if (response.status !== 200) assertEquals(handled, []); // the code never ran
    return { status: response.status, json };
  } finally {
    await server.shutdown();
  }
}

Deno.test("a valid payload reaches the handler", async () => {
  const { status, json } = await post(
    JSON.stringify({ to: "a@b", address: { zip: 1 } }),
  );
  assertEquals(status, 200);
  assertEquals(json, { sent: "a@b" });
});

Deno.test("a wrong type is 422 naming the nested field", async () => {
  const { status, json } = await post(
    JSON.stringify({ to: "a@b", address: { zip: "x" } }),
  );
  assertEquals(status, REJECT_STATUS);
  assertEquals(status, 422);
  assertEquals(json.error, "payload.address.zip must be integer");
});

Deno.test("a missing, an extra and an array item's field are each named", async () => {
  const { status, json } = await post(
    JSON.stringify({ tags: ["a", 2], cc: "x" }),
  );
  assertEquals(status, 422);
  const fields = (json.problems as { field: string }[]).map((p) => p.field)
    .sort();
  assertEquals(fields, ["payload.cc", "payload.tags[1]", "payload.to"]);
});

Deno.test("a body that is not JSON is 422 too, and a pipeline's dependency_results pass", async () => {
  const bad = await post("{not json");
  assertEquals(bad.status, 422);
  assertEquals((bad.json.problems as { field: string }[])[0].field, "payload");
  const step = await post(
    JSON.stringify({ to: "abc", dependency_results: { x: {} } }),
  );
  assertEquals(step.status, 200);
});

// = PAYLOAD_SCHEMA_DIALECTS of supaqueue/providers/queue/spec.py (and none at all).
const DIALECTS = [
  undefined,
  "https://json-schema.org/draft/2020-12/schema",
  "https://json-schema.org/draft/2019-09/schema",
  "http://json-schema.org/draft-07/schema#",
  "http://json-schema.org/draft-07/schema",
];

Deno.test("every dialect pulumi preview accepts is validated", () => {
  for (const $schema of DIALECTS) {
    const schema = { $schema, type: "object", properties: { a: { type: "string" } } };
    assertEquals(payloadProblems(schema, { a: 1 }), [{
      field: "payload.a",
      message: "must be string",
    }]);
    assertEquals(payloadProblems(schema, { a: "x" }), []);
  }
});

Deno.test("a batch gets one outcome per job: result, 422 naming the field, JobError, 500", async () => {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    batchHandler<{ to: string }>(schema, (payload, job) => {
      if (payload.to === "busy") throw new JobError(503, "busy", 2);
      if (payload.to === "boom") throw new Error("boom");
      return { sent: payload.to, attempt: job.attempt };
    }),
  );
  try {
    const jobs = [
      { id: "a", attempt: 1, payload: { to: "a@b", dependency_results: {} } },
      { id: "b", attempt: 2, payload: { to: 5 } },
      { id: "c", attempt: 1, payload: { to: "busy" } },
      { id: "d", attempt: 1, payload: { to: "boom" } },
    ];
    const response = await fetch(`http://127.0.0.1:${server.addr.port}/`, {
      method: "POST",
      headers: { "content-type": "application/json", "supaqueue-batch-size": "4" },
      body: JSON.stringify(jobs),
    });
    assertEquals(response.status, 200);
    assertEquals(await response.json(), [
      { id: "a", result: { sent: "a@b", attempt: 1 } },
      { id: "b", status: 422, error: "payload.to must be string" },
      { id: "c", status: 503, error: "busy", retry_after: 2 },
      { id: "d", status: 500, error: "boom" },
    ]);
    const single = await fetch(`http://127.0.0.1:${server.addr.port}/`, {
      method: "POST",
      body: JSON.stringify({ to: "a@b" }),
    });
    assertEquals(single.status, 400); // not a batch
    await single.body?.cancel();
  } finally {
    await server.shutdown();
  }
});
