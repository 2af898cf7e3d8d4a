// Runs the calls in $CALLS (JSON) with the real supabase-js and prints their outcomes as one
// JSON line: [{data, error, status}], so the Python test asserts what an application would see.
import { createClient } from "@supabase/supabase-js";

const calls = JSON.parse(process.env.CALLS);
const out = [];
for (const call of calls) {
  const options = { auth: { persistSession: false, autoRefreshToken: false } };
  if (call.token) {
    options.global = { headers: { Authorization: `Bearer ${call.token}` } };
  }
  const client = createClient(process.env.SUPABASE_URL, call.key, options);
  const db = call.schema ? client.schema(call.schema) : client;
  const { data, error, status } = await db.rpc(call.fn, call.args ?? {}, {
    get: !!call.get,
  });
  out.push({ data, error, status });
}
console.log(JSON.stringify(out));
