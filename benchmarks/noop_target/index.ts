// No-op target of the end-to-end benchmark (benchmarks/e2e_bench.py): answers at once with the
// time the call arrived (epoch ms, sub-millisecond), which the job keeps as its result.
Deno.serve(() => Response.json({ received_at_ms: performance.timeOrigin + performance.now() }));
