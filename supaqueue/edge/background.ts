// Work that must outlive the 202 answer. On Supabase the runtime keeps the worker alive
// for promises handed to EdgeRuntime.waitUntil; in plain Deno the promise simply runs.
type EdgeRuntimeGlobal = { waitUntil(promise: Promise<unknown>): void };

export function runInBackground(promise: Promise<unknown>): void {
  const runtime = (globalThis as { EdgeRuntime?: EdgeRuntimeGlobal }).EdgeRuntime;
  if (runtime && typeof runtime.waitUntil === "function") runtime.waitUntil(promise);
}
