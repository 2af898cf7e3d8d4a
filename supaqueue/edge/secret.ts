// Constant-time comparison of the `supaqueue-secret` header with SUPAQUEUE_SECRET.
// Both sides are hashed first so that neither the content nor the length of the
// expected secret leaks through timing. node:crypto hashes synchronously: Web Crypto's
// `digest` is an async op run on another thread, two hand-offs before every claim.
import { createHash, timingSafeEqual } from "node:crypto";

function digest(value: string): Uint8Array {
  return createHash("sha256").update(value, "utf8").digest();
}

// The expected secret's digest, kept while the secret stays the same.
let expectedDigest: { secret: string; digest: Uint8Array } | null = null;

export function secretMatches(given: string | null, expected: string): boolean {
  if (expectedDigest?.secret !== expected) {
    expectedDigest = { secret: expected, digest: digest(expected) };
  }
  const same = timingSafeEqual(digest(given ?? ""), expectedDigest.digest);
  return same && given !== null;
}
