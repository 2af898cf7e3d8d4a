// One JSON line per event, so the platform's log explorer can filter by field.
// Callers pass only non-secret fields: never headers, the secret or the database URL.
export type LogFields = Record<string, string | number | boolean | null | undefined>;

export function log(level: "info" | "warn" | "error", event: string, fields: LogFields = {}): void {
  const line = JSON.stringify({ level, event, fn: "supaqueue", ...fields });
  if (level === "error") console.error(line);
  else if (level === "warn") console.warn(line);
  else console.log(line);
}
