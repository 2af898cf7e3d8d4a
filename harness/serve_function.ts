// Plain-Deno bootstrap for tests: serves a function's `Deno.serve` handler on a chosen
// 127.0.0.1 port and adds nothing else (no EdgeRuntime, no rejection handler), so a test can
// prove the function also runs where `EdgeRuntime` does not exist.
// Usage: deno run -A serve_function.ts <port> <path/to/index.ts>
const [portText, entry] = Deno.args;
const port = Number(portText);
if (!Number.isInteger(port) || port <= 0 || !entry) {
  console.error("usage: serve_function.ts <port> <index.ts>");
  Deno.exit(2);
}

type Handler = (request: Request) => Response | Promise<Response>;
const realServe = Deno.serve.bind(Deno) as (options: Deno.ServeTcpOptions, h: Handler) => unknown;
let captured: Handler | null = null;
(Deno as unknown as { serve: unknown }).serve = (...args: unknown[]) => {
  const options = args.find((a) => typeof a === "object" && a !== null) as
    | { handler?: Handler }
    | undefined;
  captured = (args.find((a) => typeof a === "function") as Handler | undefined) ??
    options?.handler ?? null;
  return { finished: new Promise(() => {}), shutdown: async () => {}, ref() {}, unref() {} };
};

await import(new URL(entry, `file://${Deno.cwd()}/`).href);
if (captured === null) {
  console.error(`${entry} did not call Deno.serve`);
  Deno.exit(3);
}
realServe({ hostname: "127.0.0.1", port }, captured);
