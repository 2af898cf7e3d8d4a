// Retry-After is either delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
// Returns seconds from `now` (never negative), or null when absent or unparseable.
export function parseRetryAfter(value: string | null, now: Date = new Date()): number | null {
  if (value === null) return null;
  const text = value.trim();
  if (text === "") return null;
  if (/^\d+(\.\d+)?$/.test(text)) {
    const seconds = Number(text);
    return Number.isFinite(seconds) ? seconds : null;
  }
  // Only accept things that look like a date, so "soon" or "-5" are ignored, not misread.
  if (!/[a-z]/i.test(text) || !/\d/.test(text)) return null;
  const at = Date.parse(text);
  if (Number.isNaN(at)) return null;
  return Math.max(0, Math.ceil((at - now.getTime()) / 1000));
}
