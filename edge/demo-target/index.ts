// Demo target for the dev stack: echoes the JSON payload with 2xx, unless the payload asks
// to fail ({"fail": true} → 500, {"status": 503} → 503) or to be slow ({"sleep_ms": N});
// {"retry_after": "5"} adds a Retry-After header to the answer.
import { BadRequest, behaviourOf } from "./behaviour.ts";

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

async function payloadOf(request: Request): Promise<Record<string, unknown>> {
  if (request.method === "GET" || request.method === "DELETE" || request.method === "HEAD") {
    return Object.fromEntries(new URL(request.url).searchParams);
  }
  const text = await request.text();
  if (text.trim() === "") return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new BadRequest("body is not valid JSON");
  }
  // Arrays and scalars are echoed as they are; only objects can ask for a behaviour.
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    return { value: parsed };
  }
  return parsed as Record<string, unknown>;
}

Deno.serve(async (request: Request): Promise<Response> => {
  try {
    const payload = await payloadOf(request);
    const behaviour = behaviourOf(payload);
    if (behaviour.sleepMs > 0) await new Promise((r) => setTimeout(r, behaviour.sleepMs));
    const extra: Record<string, string> = behaviour.retryAfter === null
      ? {}
      : { "retry-after": behaviour.retryAfter };
    const ok = behaviour.status < 300;
    return json(behaviour.status, {
      ok,
      method: request.method,
      job_id: request.headers.get("supaqueue-job-id"),
      attempt: Number(request.headers.get("supaqueue-attempt") ?? "0") || null,
      echo: payload,
      ...(ok ? {} : { error: `demo failure with status ${behaviour.status}, as asked` }),
    }, extra);
  } catch (err) {
    if (err instanceof BadRequest) return json(400, { ok: false, error: err.message });
    return json(500, { ok: false, error: "demo target failed unexpectedly" });
  }
});
