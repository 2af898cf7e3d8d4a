-- supaqueue 0029: a held worker names the lease of the call it is held for (docs/architecture.md,
-- "Concurrency at the target"). A worker whose call may still run at the target is held until
-- the target's wall clock has passed (0017); when that call's whole answer comes after all (a
-- report of the lease, no longer current, with `is_complete` true), the call is over and the
-- worker is freed at once (`_release_held_for`, functions/40_dispatch.sql) instead of ~7 minutes
-- later. Workers held before this migration have none: the tick frees them at held_until.

alter table supaqueue.worker add column held_for uuid;
-- probed by each report of a lease that is not current; a lease holds at most one worker
create unique index worker_held_for_idx on supaqueue.worker (held_for) where held_for is not null;
