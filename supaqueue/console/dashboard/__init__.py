"""`supaqueue ui`: the dashboard (server, templates, static files)."""
