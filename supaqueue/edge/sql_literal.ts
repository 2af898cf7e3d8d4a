// Values written into the function's few SQL statements as literals, not as bound parameters.
// Why: with `prepare: false` (needed behind a transaction-mode pooler) postgres.js sends every
// query that has parameters in two round trips (Parse + Describe, wait for the parameter types,
// then Bind + Execute), and a query without parameters in one. That second round trip cost a
// fifth of the function's CPU per job and a round trip of latency before each target call.
//
// Every value becomes a dollar-quoted string whose tag does not occur in it, so no content can
// end the literal early, whatever `standard_conforming_strings` says; the statement casts it to
// its type (`${literal(id)}::uuid`), as the parameters were cast before.
export type SqlValue = string | number | boolean | null;

export function literal(value: SqlValue): string {
  if (value === null) return "null";
  if (typeof value === "boolean") return value ? "true" : "false";
  // Postgres text cannot hold U+0000 (and a Parse message would end at it).
  const text = String(value).replaceAll("\u0000", "\ufffd");
  for (let n = 0;; n++) {
    const quote = n === 0 ? "$q$" : `$q${n}$`;
    // The literal ends at the first `quote` after its opening: it must be the closing one.
    if ((text + quote).indexOf(quote) === text.length) return `${quote}${text}${quote}`;
  }
}
