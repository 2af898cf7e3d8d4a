// Target of the keys benchmark's fairness run with a target that takes time (benchmarks/
// keys_bench.py --target-ms): answers after the payload's `sleep_ms` (0 if absent), as a real
// function waits on an API or a query, with the time the call arrived (epoch ms, as
// benchmarks/noop_target does). Waiting costs no CPU: the run then measures the dispatch order,
// not only the two cores shared with the busy key's calls.
Deno.serve(async (request) => {
  const receivedAtMs = performance.timeOrigin + performance.now();
  let sleepMs = 0;
  try {
    const payload = JSON.parse(await request.text());
    if (typeof payload?.sleep_ms === "number") sleepMs = Math.min(payload.sleep_ms, 10_000);
  } catch {
    // not JSON: no wait
  }
  if (sleepMs > 0) await new Promise((resolve) => setTimeout(resolve, sleepMs));
  return Response.json({ received_at_ms: receivedAtMs });
});
