// Enqueue from an Edge Function with SQL: SUPABASE_DB_URL is set in every Edge Function.
import postgres from "postgres"; // deno.json maps it to npm:postgres@3.4.9

const sql = postgres(Deno.env.get("SUPABASE_DB_URL")!, { max: 1 });

Deno.serve(async (req) => {
  const { to } = await req.json();
  // By name: a misspelled or removed queue fails here (SQLSTATE SQ020) instead of losing the job.
  const [{ id }] = await sql`select supaqueue.enqueue('emails', ${sql.json({ to })}) as id`;
  return Response.json({ job_id: id }, { status: 202 });
});
