// Boots one deployed Edge Function the way Supabase's edge runtime presents it:
// `EdgeRuntime.waitUntil`, `Deno.serve` bound to the port the gateway assigned, then the
// function's own entrypoint. On SIGTERM (redeploy, secrets change, `dev down`) it dispatches
// `beforeunload`, stops taking requests, lets in-flight ones finish and waits for waitUntil work
// before exiting.

const CONTROL = ["SUPAQUEUE_EDGE_PORT", "SUPAQUEUE_EDGE_ENTRYPOINT", "SUPAQUEUE_EDGE_DRAIN_MS"];
const port = Number(Deno.env.get("SUPAQUEUE_EDGE_PORT"));
const entrypoint = Deno.env.get("SUPAQUEUE_EDGE_ENTRYPOINT") ?? "";
const drainMs = Number(Deno.env.get("SUPAQUEUE_EDGE_DRAIN_MS") ?? "60000");
// The function sees Supabase's environment only, not the runtime's plumbing.
for (const name of CONTROL) Deno.env.delete(name);

const PORT_TAKEN_EXIT = 75;
const pending = new Set<Promise<unknown>>();

(globalThis as unknown as { EdgeRuntime: unknown }).EdgeRuntime = {
  waitUntil<T>(promise: Promise<T>): Promise<T> {
    const tracked: Promise<unknown> = Promise.resolve(promise)
      .catch((err) => console.error("EdgeRuntime.waitUntil promise rejected:", err))
      .finally(() => pending.delete(tracked));
    pending.add(tracked);
    return promise;
  },
};

// Supabase logs unhandled rejections and keeps the worker alive; plain Deno would exit.
globalThis.addEventListener("unhandledrejection", (event) => {
  console.error("unhandled rejection:", event.reason);
  event.preventDefault();
});

type Handler = Deno.ServeHandler;
type Options = Record<string, unknown> & { handler?: Handler; onListen?: unknown };

const originalServe = Deno.serve.bind(Deno) as (...args: unknown[]) => Deno.HttpServer;
let server: Deno.HttpServer | undefined;

function serve(first: unknown, second?: unknown): Deno.HttpServer {
  if (server) throw new Error("Deno.serve may be called only once per Edge Function");
  let options: Options = {};
  let handler: Handler | undefined;
  if (typeof first === "function") {
    handler = first as Handler;
  } else {
    options = { ...((first ?? {}) as Options) };
    handler = typeof second === "function" ? (second as Handler) : options.handler;
  }
  if (!handler) throw new TypeError("Deno.serve needs a handler");
  delete options.handler;
  const userOnListen = options.onListen;
  const forced: Options = {
    ...options,
    port,
    hostname: "127.0.0.1",
    onListen: (addr: unknown) => {
      if (typeof userOnListen === "function") userOnListen(addr);
    },
  };
  server = originalServe(forced, handler);
  return server;
}
(Deno as unknown as { serve: unknown }).serve = serve;

async function drainAndExit(): Promise<never> {
  const deadline = Date.now() + drainMs;
  // As Supabase's runtime does before it stops a worker: functions may wind down (stop taking
  // on more background work) while in-flight requests finish.
  globalThis.dispatchEvent(new CustomEvent("beforeunload", { detail: { reason: "termination" } }));
  try {
    await server?.shutdown();
  } catch (err) {
    console.error("shutdown:", err);
  }
  // waitUntil work may register more waitUntil work: loop until none is left or time is up.
  while (pending.size > 0 && Date.now() < deadline) {
    const timer = new Promise((resolve) => setTimeout(resolve, Math.max(0, deadline - Date.now())));
    await Promise.race([Promise.allSettled([...pending]), timer]);
  }
  Deno.exit(0);
}
Deno.addSignalListener("SIGTERM", () => void drainAndExit());
Deno.addSignalListener("SIGINT", () => void drainAndExit());

if (!Number.isInteger(port) || port <= 0 || !entrypoint) {
  console.error("edge bootstrap: SUPAQUEUE_EDGE_PORT and SUPAQUEUE_EDGE_ENTRYPOINT are required");
  Deno.exit(2);
}
try {
  await import(entrypoint);
} catch (err) {
  if (err instanceof Deno.errors.AddrInUse) {
    // Another process took the assigned port between its choice and our bind: the runtime
    // retries on a new port when it sees this exit code.
    console.error("edge bootstrap: port", port, "was taken; asking for another");
    Deno.exit(PORT_TAKEN_EXIT);
  }
  console.error("BOOT_ERROR: the function failed to load:", err);
  Deno.exit(1);
}
if (!server) {
  console.error("BOOT_ERROR: the function did not call Deno.serve");
  Deno.exit(1);
}
