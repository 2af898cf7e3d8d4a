// A function supaqueue calls: the body is the job's payload; a 2xx answer is success and its JSON
// body becomes the job's result.
Deno.serve(async (req) => {
  const jobId = req.headers.get("supaqueue-job-id"); // the same on every retry: your idempotency key
  const attempt = Number(req.headers.get("supaqueue-attempt")); // 1 on the first call
  const payload = await req.json();
  if (typeof payload.to !== "string") { // by default a 4xx (but 408, 429) is final: no retry
    return Response.json({ error: "payload.to must be a string" }, { status: 422 });
  }
  if (payload.busy) return new Response("busy", { status: 503, headers: { "retry-after": "2" } });
  return Response.json({ sent_to: payload.to, job_id: jobId, attempt });
});
