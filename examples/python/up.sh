# In your Pulumi project's folder, with the wheel built from the supaqueue repository (`make wheel`)
python3 -m venv venv
venv/bin/pip install "$SUPAQUEUE_WHEEL[local-stack]"  # from a package index: -r requirements.txt
venv/bin/supaqueue dev up      # a local Supabase for this project, kept in ./.local-stack/
set -a; eval "$(venv/bin/supaqueue dev status -o env)"; set +a
psql "$DB_URL" -c 'create table if not exists public.signups (id bigserial primary key, email text)'
pulumi stack select dev --create
pulumi up
