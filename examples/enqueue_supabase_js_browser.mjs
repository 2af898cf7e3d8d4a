// In the browser, signed in with Supabase Auth: the user's JWT (role `authenticated`) goes with
// each call, so only a queue whose enqueue_roles include "authenticated" takes the job.
export async function requestExport(supabase, reportId) {
  const { data: jobId, error } = await supabase
    .schema("supaqueue_api")
    .rpc("enqueue", {
      queue: "user-exports",
      payload: { report_id: reportId },
    });
  if (error) throw error; // {code, message, details, hint}: 42501 when the queue refuses users
  return jobId;
}
