// Target of the backpressure benchmark (benchmarks/backpressure_bench.py): a job whose payload
// says `"busy": true` is answered 429 with `Retry-After: <retry_after, default 2>` (a target at
// its limit); any other at once with 200, as benchmarks/noop_target does. Both answers carry the
// time the call arrived (epoch ms).
Deno.serve(async (request) => {
  const receivedAtMs = performance.timeOrigin + performance.now();
  const text = await request.text();
  let payload: { busy?: boolean; retry_after?: number } = {};
  try {
    payload = JSON.parse(text) ?? {};
  } catch {
    // not JSON: not busy
  }
  if (payload.busy === true) {
    return Response.json(
      { busy: true, received_at_ms: receivedAtMs },
      {
        status: 429,
        headers: { "Retry-After": String(payload.retry_after ?? 2) },
      },
    );
  }
  return Response.json({ received_at_ms: receivedAtMs });
});
