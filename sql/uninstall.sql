-- Removes supaqueue: its pg_cron jobs, then the schema with everything in it.
-- Not a migration (the runner only loads NNNN_<name>.sql). The Vault secret is the provider's.
do $$
begin
  if to_regclass('cron.job') is not null then
    perform cron.unschedule(jobid) from cron.job where jobname like 'supaqueue%';
  end if;
end
$$;
drop schema if exists supaqueue cascade;
