// What a demo request asks for. POST/PUT/PATCH send a JSON body; GET/DELETE send query
// parameters (strings), so "503" and "true" are read like 503 and true.
export interface Behaviour {
  status: number;
  sleepMs: number;
  retryAfter: string | null;
}

// Bounded so a demo payload cannot hold a worker past the Edge runtime's wall clock.
export const MAX_SLEEP_MS = 120_000;

function asNumber(value: unknown): number | null {
  if (typeof value === "number" && Number.isFinite(value)) return value;
  if (typeof value === "string" && /^\d+$/.test(value.trim())) return Number(value);
  return null;
}

export class BadRequest extends Error {}

export function behaviourOf(payload: Record<string, unknown>): Behaviour {
  let status = 200;
  if (payload.fail === true || payload.fail === "true") status = 500;
  if ("status" in payload) {
    const asked = asNumber(payload.status);
    if (asked === null || !Number.isInteger(asked) || asked < 200 || asked > 599) {
      throw new BadRequest("status must be an integer from 200 to 599");
    }
    status = asked;
  }
  let sleepMs = 0;
  if ("sleep_ms" in payload) {
    const asked = asNumber(payload.sleep_ms);
    if (asked === null || asked < 0) throw new BadRequest("sleep_ms must be a number >= 0");
    sleepMs = Math.min(asked, MAX_SLEEP_MS);
  }
  const retryAfter = payload.retry_after === undefined ? null : String(payload.retry_after);
  return { status, sleepMs, retryAfter };
}
