// Constant-time comparison of the `supaqueue-secret` header with SUPAQUEUE_SECRET.
// Both sides are hashed first so that neither the content nor the length of the
// expected secret leaks through timing.
async function digest(value: string): Promise<Uint8Array> {
  const bytes = new TextEncoder().encode(value);
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

export async function secretMatches(given: string | null, expected: string): Promise<boolean> {
  const a = await digest(given ?? "");
  const b = await digest(expected);
  let diff = given === null ? 1 : 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}
