-- supaqueue 0006: run supaqueue.tick() every second with pg_cron.
-- pg_cron >= 1.5 (Supabase ships 1.6) has seconds schedules. Older versions (Debian's 1.4) only run
-- once a minute, so there a per-minute job calls supaqueue.tick_loop(), which ticks every second.
-- pg_cron lives in one database (cron.database_name); installed elsewhere, supaqueue needs another
-- way to call supaqueue.tick() every second, and says so.
do $$
declare
  _version integer[];
begin
  if not exists (select 1 from pg_catalog.pg_extension where extname = 'pg_cron') then
    if current_setting('cron.database_name', true) is distinct from current_database() then
      raise notice 'supaqueue: pg_cron is not available in database %; nothing calls '
                   'supaqueue.tick() every second (leases, run_at, retries, rate limits, retention)',
                   current_database();
      return;
    end if;
    create extension if not exists pg_cron;
  end if;
  select string_to_array(split_part(extversion, '-', 1), '.')::integer[] into _version
    from pg_catalog.pg_extension where extname = 'pg_cron';
  if _version >= array[1, 5] then
    perform cron.schedule('supaqueue-tick', '1 seconds', 'select supaqueue.tick()');
  else
    perform cron.schedule('supaqueue-tick', '* * * * *', 'call supaqueue.tick_loop()');
  end if;
end
$$;
