// The function's environment: the Supabase defaults plus the SUPAQUEUE_SECRET secret.
export interface Config {
  secret: string;
  supabaseUrl: string;
  dbUrl: string;
  serviceRoleKey: string;
}

export type ConfigResult = { ok: true; config: Config } | { ok: false; missing: string[] };

export function readConfig(env: (name: string) => string | undefined): ConfigResult {
  const names = [
    "SUPAQUEUE_SECRET",
    "SUPABASE_URL",
    "SUPABASE_DB_URL",
    "SUPABASE_SERVICE_ROLE_KEY",
  ];
  const values = names.map((name) => env(name) ?? "");
  const missing = names.filter((_, i) => values[i] === "");
  if (missing.length > 0) return { ok: false, missing };
  const [secret, supabaseUrl, dbUrl, serviceRoleKey] = values;
  return { ok: true, config: { secret, supabaseUrl, dbUrl, serviceRoleKey } };
}
