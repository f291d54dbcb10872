/**
 * A scratch file written front to back (src/store/sequential-write.ts): its
 * hash as written must be exactly the one the store computes by reading
 * (else a blob would be misnamed and dedup would break), and anything but
 * writing at the front must fall back to reading. Also the write-behind
 * ranges it starts.
 */
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { O_CREAT, O_RDWR } from '../../src/overlay/contract.js';
import { Overlay } from '../../src/overlay/overlay.js';
import { hashFile } from '../../src/store/blobs.js';
import { hash64, initHash } from '../../src/store/hash.js';
import { SequentialWrite, WRITEBACK_STEP } from '../../src/store/sequential-write.js';
import { makeWorkspace, removeTempDirs, tempDir } from '../helpers/core.js';
import { prng } from '../helpers/random.js';

/** `len` bytes from a seeded generator. */
function randomBytes(len: number, seed: number): Buffer {
  const next = prng(seed);
  const out = Buffer.allocUnsafe(len);
  for (let i = 0; i < len; i++) out[i] = (next() * 256) | 0;
  return out;
}

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
  removeTempDirs();
});

/** Writes `content` through `s` in chunks of the given sizes, front to back. */
function writeInChunks(s: SequentialWrite, content: Buffer, sizes: number[]): void {
  let at = 0;
  for (let i = 0; at < content.length; i++) {
    const n = Math.min(sizes[i % sizes.length]!, content.length - at);
    s.wrote(3, content.subarray(at, at + n), at);
    at += n;
  }
}

describe('SequentialWrite', () => {
  it('hashes what is written front to back exactly as hash64 of the whole, whatever the chunk sizes', async () => {
    await initHash();
    for (const len of [0, 1, 31, 32, 33, 4096, 100_000, 3 * 1024 * 1024 + 7]) {
      const content = randomBytes(len, len);
      for (const sizes of [[1 << 20], [1, 7, 4096, 31], [32]]) {
        const s = new SequentialWrite(0, undefined);
        writeInChunks(s, content, sizes);
        expect(s.hashOf(len)).toBe(hash64(content));
      }
    }
  });

  it('knows nothing once a write lands elsewhere than at the front, or for content it did not see', async () => {
    await initHash();
    const content = randomBytes(10_000, 1);
    const rewrite = new SequentialWrite(0, undefined);
    writeInChunks(rewrite, content, [4096]);
    rewrite.wrote(3, content.subarray(0, 100), 0); // same bytes, but written again
    expect(rewrite.hashOf(10_000)).toBeUndefined();
    const hole = new SequentialWrite(0, undefined);
    hole.wrote(3, content.subarray(100), 100);
    expect(hole.hashOf(10_000)).toBeUndefined();
    const copiedUp = new SequentialWrite(500, undefined); // a file that started with content
    copiedUp.wrote(3, content, 500);
    expect(copiedUp.hashOf(10_500)).toBeUndefined();
    const partial = new SequentialWrite(0, undefined);
    writeInChunks(partial, content, [4096]);
    expect(partial.hashOf(20_000)).toBeUndefined(); // the file is larger than what was seen
  });

  it('a truncation to 0 starts over; to the front changes nothing; anywhere else forgets the hash', async () => {
    await initHash();
    const content = randomBytes(5000, 2);
    const restart = new SequentialWrite(0, undefined);
    writeInChunks(restart, randomBytes(3000, 3), [1000]);
    restart.truncated(0);
    writeInChunks(restart, content, [1000]);
    expect(restart.hashOf(5000)).toBe(hash64(content));
    const same = new SequentialWrite(0, undefined);
    writeInChunks(same, content, [1000]);
    same.truncated(5000);
    expect(same.hashOf(5000)).toBe(hash64(content));
    const shrunk = new SequentialWrite(0, undefined);
    writeInChunks(shrunk, content, [1000]);
    shrunk.truncated(4000);
    shrunk.wrote(3, content.subarray(4000), 4000);
    expect(shrunk.hashOf(5000)).toBeUndefined();
    const grown = new SequentialWrite(0, undefined);
    grown.truncated(100);
    grown.wrote(3, content.subarray(100), 100);
    expect(grown.hashOf(5000)).toBeUndefined();
  });

  it('starts the disk writes of each completed step once, in order, on the written descriptor', () => {
    const started: [number, number, number][] = [];
    const s = new SequentialWrite(0, (fd, offset, length) => started.push([fd, offset, length]));
    const mib = Buffer.alloc(1 << 20);
    for (let at = 0; at < 2.5 * WRITEBACK_STEP; at += mib.length) s.wrote(7, mib, at);
    expect(started).toEqual([[7, 0, WRITEBACK_STEP], [7, WRITEBACK_STEP, WRITEBACK_STEP]]);
    s.wrote(7, mib, 0); // out of order: nothing more is started for it
    expect(started).toHaveLength(2);
  });
});

describe('the ingest of a file written front to back', () => {
  async function openOv(): Promise<Overlay> {
    const ov = await Overlay.open({ workspace: makeWorkspace({}), stateDir: path.join(tempDir('cowfs-seq-'), 'state') });
    closers.push(() => ov.close());
    ov.createAgent('a', null);
    return ov;
  }

  /** Creates `p` in agent a's tree and writes `content` at the given offsets (whole chunks), then releases it. */
  function writeAt(ov: Overlay, p: string, content: Buffer, chunk: number, order: number[]): void {
    const tree = ov.tree('a');
    const fh = tree.create(p, 0o644, O_CREAT | O_RDWR, 0, 0);
    for (const i of order) {
      const part = content.subarray(i * chunk, (i + 1) * chunk);
      tree.write(fh, part, part.length, i * chunk);
    }
    tree.release(fh);
  }

  function blobOf(ov: Overlay, p: string): string {
    const e = ov.tree('a').layer.get(p);
    if (e?.kind !== 'file') throw new Error(`${p} is not a file in the layer`);
    return e.hash;
  }

  it('names the blob with the hash seen as written, the same id reading it would give, and shares it with a twin', async () => {
    const ov = await openOv();
    const putFile = vi.spyOn(ov.blobs, 'putFile');
    const content = randomBytes(3 * 1024 * 1024 + 123, 4);
    writeAt(ov, 'seq.bin', content, 65_536, [...Array(Math.ceil(content.length / 65_536)).keys()]);
    const id = blobOf(ov, 'seq.bin');
    expect(id).toBe(`${hash64(content)}:${content.length}`);
    expect(putFile.mock.calls.at(-1)![2]).toBe(hash64(content)); // known: not read back
    expect(ov.blobs.get(id).equals(content)).toBe(true);
    expect(hashFile(ov.blobs.fileOf(id)!)).toBe(hash64(content));

    // The same bytes written out of order: read back to hash, and the very same blob.
    const chunks = Math.ceil(content.length / 65_536);
    writeAt(ov, 'shuffled.bin', content, 65_536, [...Array(chunks).keys()].reverse());
    expect(putFile.mock.calls.at(-1)![2]).toBeUndefined();
    expect(blobOf(ov, 'shuffled.bin')).toBe(id);
  });

  it('falls back to reading after a truncation, and after a copy-up of existing content', async () => {
    const ov = await openOv();
    const putFile = vi.spyOn(ov.blobs, 'putFile');
    const content = randomBytes(200_000, 5);
    const tree = ov.tree('a');
    const fh = tree.create('t.bin', 0o644, O_CREAT | O_RDWR, 0, 0);
    tree.write(fh, content, content.length, 0);
    tree.ftruncate(fh, 150_000);
    tree.write(fh, content.subarray(150_000), 50_000, 150_000);
    tree.release(fh);
    expect(putFile.mock.calls.at(-1)![2]).toBeUndefined();
    expect(blobOf(ov, 't.bin')).toBe(`${hash64(content)}:${content.length}`);

    // Appending to the file now in the store: copied up, so its hash is read.
    const more = randomBytes(10_000, 6);
    const fh2 = tree.open('t.bin', O_RDWR);
    tree.write(fh2, more, more.length, content.length);
    tree.release(fh2);
    const whole = Buffer.concat([content, more]);
    expect(putFile.mock.calls.at(-1)![2]).toBeUndefined();
    expect(blobOf(ov, 't.bin')).toBe(`${hash64(whole)}:${whole.length}`);
  });
});
