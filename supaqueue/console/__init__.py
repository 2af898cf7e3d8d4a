"""The operator console: `supaqueue status|jobs|job|retry|cancel|purge|pause|resume` (CLI) and
`supaqueue ui` (dashboard), both on the SQL operator API (sql/0013_operator.sql). May import
`supaqueue/`, never `local_stack/`."""
