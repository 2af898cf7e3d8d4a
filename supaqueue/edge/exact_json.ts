// JSON without float rounding (issue 21): payloads and answers keep their numbers exactly as
// written (a 23-digit id, 1e1000, 1e-400), which JSON.parse + JSON.stringify would round.

// V8's JSON.parse source text access and JSON.rawJSON (Deno 1.37+, Supabase's runtime).
type RawJson = { readonly rawJSON: string };
const JSONX = JSON as unknown as {
  rawJSON?: (text: string) => RawJson;
  isRawJSON?: (value: unknown) => value is RawJson;
};

export function isRawNumber(value: unknown): value is RawJson {
  return JSONX.isRawJSON !== undefined && JSONX.isRawJSON(value);
}

// Parses JSON text with every number kept as its source text (a raw JSON value that
// JSON.stringify writes back unchanged); only where the runtime lacks source text access do
// numbers become floats.
export function parseExact(text: string): unknown {
  const rawJSON = JSONX.rawJSON;
  if (rawJSON === undefined) return JSON.parse(text);
  return JSON.parse(
    text,
    // deno-lint-ignore no-explicit-any
    (_key: string, value: unknown, context?: any) =>
      typeof value === "number" && typeof context?.source === "string"
        ? rawJSON(context.source)
        : value,
  );
}

// The text of a scalar as a query parameter: numbers as written in the JSON.
export function scalarText(value: unknown): string {
  return isRawNumber(value) ? value.rawJSON : String(value);
}

// JSON text made storable as Postgres jsonb without parsing it into JS values: `\u0000`
// escapes dropped (jsonb refuses them) and escapes of lone surrogates (half an emoji) replaced
// by U+FFFD; a surrogate pair written as two escapes is kept. `text` must be valid JSON
// (validated by the caller), so escapes occur only inside strings. Returns a note when
// anything was changed.
export function storableJsonText(text: string): { json: string; note: string | null } {
  let nul = false;
  let lone = false;
  let out = "";
  let last = 0;
  let high = -1; // where in `out` an unpaired high surrogate escape starts
  let highEnd = -1; // where in `text` it ended
  const loneHigh = () => {
    out = `${out.slice(0, high)}\\ufffd${out.slice(high + 6)}`;
    lone = true;
    high = -1;
  };
  // Every escape, left to right, so `\\` pairs are consumed as one and never start another.
  for (const m of text.matchAll(/\\(?:u([0-9a-fA-F]{4})|[^u])/g)) {
    const at = m.index!;
    out += text.slice(last, at);
    last = at + m[0].length;
    const code = m[1] === undefined ? -1 : parseInt(m[1], 16);
    const isLow = code >= 0xdc00 && code <= 0xdfff;
    if (high >= 0) {
      if (isLow && highEnd === at) {
        high = -1; // a pair: kept as written
        out += m[0];
        continue;
      }
      loneHigh();
    }
    if (isLow) {
      out += "\\ufffd";
      lone = true;
    } else if (code === 0) {
      nul = true;
    } else {
      if (code >= 0xd800 && code <= 0xdbff) {
        high = out.length;
        highEnd = last;
      }
      out += m[0];
    }
  }
  out += text.slice(last);
  if (high >= 0) loneHigh();
  const changes = [
    nul ? "U+0000 removed" : null,
    lone ? "lone surrogates replaced by U+FFFD" : null,
  ].filter((c) => c !== null);
  return { json: out, note: changes.length ? `result stored with ${changes.join(", ")}` : null };
}
