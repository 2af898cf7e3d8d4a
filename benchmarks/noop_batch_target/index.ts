// No-op target of the batch benchmark (benchmarks/batch_bench.py): a batched queue's function
// (docs/architecture/application-api.md, "Batch contract"). Reads the JSON array of jobs and
// answers each with an empty result.
Deno.serve(async (request) => {
  const jobs: { id: string }[] = await request.json();
  return Response.json(jobs.map((job) => ({ id: job.id, result: {} })));
});
