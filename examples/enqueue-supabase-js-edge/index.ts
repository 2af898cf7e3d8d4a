// An Edge Function that enqueues a job with supabase-js and the service role (Data API).
import { createClient } from "@supabase/supabase-js";

const supabase = createClient(
  Deno.env.get("SUPABASE_URL")!,
  Deno.env.get("SUPABASE_SERVICE_ROLE_KEY")!,
  { db: { schema: "supaqueue_api" } },
);

Deno.serve(async (req) => {
  const { email } = await req.json();
  const { data: jobId, error } = await supabase.rpc("enqueue", {
    queue: "welcome-emails",
    payload: { email },
  });
  if (error) return Response.json(error, { status: 500 });
  return Response.json({ job_id: jobId });
});
