// supaqueue dispatcher: pg_net POSTs one dispatch per job here (docs/architecture.md).
import { createHandler } from "./handler.ts";

Deno.serve(createHandler((name) => Deno.env.get(name)));
