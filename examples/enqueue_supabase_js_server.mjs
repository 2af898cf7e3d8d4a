// A Node server (a Next.js route handler, Express, a script) enqueues with the service role.
import { createClient } from "@supabase/supabase-js";

const supabase = createClient(
  process.env.SUPABASE_URL,
  process.env.SUPABASE_SERVICE_ROLE_KEY,
  {
    db: { schema: "supaqueue_api" },
    auth: { persistSession: false },
  },
);

const { data: jobIds, error } = await supabase.rpc("enqueue_batch", {
  queue: "welcome-emails",
  payloads: [{ email: "a@example.com" }, { email: "b@example.com" }],
});
if (error) throw new Error(`${error.code}: ${error.message}`);

// Later (or in a loop, to wait for it): a job's status and result (a read: GET).
const { data: job } = await supabase.rpc("get_job", { id: jobIds[0] }, {
  get: true,
});
console.log(JSON.stringify({ job_ids: jobIds, status: job.status }));
