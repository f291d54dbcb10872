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

/** A streaming xxhash64: the same value as hash64 of all the chunks together. */
export interface Hash64 {
  update(chunk: Uint8Array): void;
  /** The hash of what was given so far (more may follow). */
  digest(): string;
}

/** Streaming xxhash64 for content read or written in chunks (large scratch files). */
export function createHash64(): Hash64 {
  const h = hasher().create64();
  return {
    update(chunk) { h.update(chunk); },
    digest() { return h.digest().toString(16).padStart(16, '0'); },
  };
}
