import xxhash, { type XXHashAPI } from 'xxhash-wasm';

/** xxhash-wasm needs one async initialisation; everything after is sync. */
let api: XXHashAPI | undefined;

export async function initHash(): Promise<void> {
  api ??= await xxhash();
}

function hasher(): XXHashAPI {
  if (!api) throw new Error('initHash() must be awaited before hashing');
  return api;
}

/** xxhash64 of the bytes, as 16 hex digits. */
export function hash64(bytes: Uint8Array): string {
  return hasher().h64Raw(bytes).toString(16).padStart(16, '0');
}

/** Streaming xxhash64 for content read in chunks (large scratch files). */
export function createHash64(): { update(chunk: Uint8Array): void; digest(): string } {
  const h = hasher().create64();
  return {
    update(chunk) { h.update(chunk); },
    digest() { return h.digest().toString(16).padStart(16, '0'); },
  };
}
