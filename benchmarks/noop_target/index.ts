// No-op target of the end-to-end benchmark (benchmarks/e2e_bench.py): answers at once with the
// time the call arrived (epoch ms, sub-millisecond), which the job keeps as its result.
// It reads the request body (the job's payload) as any real target does: Deno closes a keep-alive
// connection whose handler answered before the body was read, and the gateway would then open a
// new connection for many calls, a cost no real target imposes.
Deno.serve(async (request) => {
  const receivedAtMs = performance.timeOrigin + performance.now();
  await request.arrayBuffer();
  return Response.json({ received_at_ms: receivedAtMs });
});
