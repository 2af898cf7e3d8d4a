"""supaqueue local stack: Postgres + pg_cron, net/vault stand-ins, Edge gateway, Management API."""
