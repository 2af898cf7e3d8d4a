-- supaqueue functions/99_privileges.sql: privileges, applied last (after every routine and view
-- exists): supaqueue.apply_privileges() (90_installation.sql) is their one authority.
-- Repeatable: re-applied whole whenever a file here changes (docs/architecture.md).

select supaqueue.apply_privileges();
