-- supaqueue 0025: a queue may declare the JSON Schema of its payloads (`payload_schema` in the
-- stack; issue 25 item 4). Stored here so that tools read it from the database:
-- `supaqueue gen types` writes typed enqueue clients from it, and the called function validates
-- with the same schema (a bad payload answers 422, non-retryable by default, and fails once).
-- The engine does NOT validate payloads at enqueue (docs/architecture.md, "Payload schemas").
-- Its validity as a JSON Schema is checked at `pulumi preview` (the `jsonschema` library); the
-- database keeps only the shape and the size (the authority for the size limit:
-- components/providers/queue/spec.py mirrors it, tests/engine/test_queue_limits.py compares).

alter table supaqueue.queue add column payload_schema jsonb;
alter table supaqueue.queue add constraint queue_payload_schema_object
  check (payload_schema is null or jsonb_typeof(payload_schema) = 'object');
-- 64 KiB of JSON text: far above any hand-written schema, small enough to read with every
-- `gen types` and to ship inside an Edge Function.
alter table supaqueue.queue add constraint queue_payload_schema_size
  check (payload_schema is null or octet_length(payload_schema::text) <= 65536);
