import fs from 'node:fs';
import path from 'node:path';
import { createHash64, hash64 } from './hash.js';
import type { Store } from './env.js';

/**
 * Content-addressed blobs. A blob's id is `xxhash64:size`; when two different
 * contents share it, the later one gets `:1`, `:2`… — a hash hit is only
 * shared after comparing the bytes, so a collision never returns the wrong
 * content. Small blobs live inline in lmdb; large ones are files under
 * `blobs/` (a scratch file is renamed there, never copied).
 */
export const INLINE_MAX = 64 * 1024;
const CHUNK = 1024 * 1024;

export type BlobId = string;

export class BlobStore {
  /** Sets that record every id stored or found from now on (a gc's mark must keep them). */
  private readonly watchers = new Set<Set<BlobId>>();

  constructor(private readonly store: Store) {}

  /**
   * Starts recording every id put, found again (a dedup hit) or adopted:
   * a gc never deletes what was stored or reused after its mark began.
   */
  watch(): Set<BlobId> {
    const seen = new Set<BlobId>();
    this.watchers.add(seen);
    return seen;
  }

  unwatch(seen: Set<BlobId>): void {
    this.watchers.delete(seen);
  }

  /** Stores bytes (once, whatever the number of agents) and returns their id. */
  put(bytes: Buffer): BlobId {
    const base = `${hash64(bytes)}:${bytes.length}`;
    for (let n = 0; ; n++) {
      const id = n === 0 ? base : `${base}:${n}`;
      const rec = this.store.dbs.blobMeta.get(id);
      if (!rec) {
        this.writeNew(id, bytes);
        return this.seen(id);
      }
      if (this.get(id).equals(bytes)) return this.seen(id);
    }
  }

  /**
   * Stores the content of a file without consuming it. A large file is
   * hard-linked into the store when the caller will never write it again
   * (`link`: a scratch file being released), copied otherwise; the caller
   * deletes its file only after the change that names the blob committed, so
   * a crash in between loses nothing. `known`: the content's xxhash64 when
   * the caller saw every byte written (SequentialWrite), so a large file is
   * not read back to hash it.
   */
  putFile(file: string, how: 'link' | 'copy', known?: string): BlobId {
    const size = fs.statSync(file).size;
    if (size <= INLINE_MAX) return this.put(fs.readFileSync(file));
    const base = `${known ?? hashFile(file)}:${size}`;
    for (let n = 0; ; n++) {
      const id = n === 0 ? base : `${base}:${n}`;
      const dest = this.filePath(id);
      if (!this.store.dbs.blobMeta.get(id)) {
        fs.mkdirSync(path.dirname(dest), { recursive: true });
        fs.rmSync(dest, { force: true }); // a leftover of a crash before its record was written
        if (how === 'link') fs.linkSync(file, dest);
        else fs.copyFileSync(file, dest);
        this.store.dbs.blobMeta.putSync(id, { size, file: true });
        return this.seen(id);
      }
      if (filesEqual(file, dest)) return this.seen(id);
    }
  }

  /**
   * putFile for a file the caller holds open at `fd` and whose size it
   * knows (a scratch file): a small one is read through the descriptor,
   * without opening, stating and closing it again.
   */
  putOpenFile(fd: number, file: string, size: number, how: 'link' | 'copy', known?: string): BlobId {
    if (size > INLINE_MAX) return this.putFile(file, how, known);
    const bytes = Buffer.allocUnsafe(size);
    let got = 0;
    for (let n; got < size && (n = fs.readSync(fd, bytes, got, size - got, got)) > 0;) got += n;
    return this.put(bytes.subarray(0, got));
  }

  has(id: BlobId): boolean {
    return this.store.dbs.blobMeta.get(id) !== undefined;
  }

  size(id: BlobId): number {
    return blobSize(id);
  }

  /** The whole content. */
  get(id: BlobId): Buffer {
    const rec = this.store.dbs.blobMeta.get(id);
    if (!rec) throw new Error(`blob ${id} is missing from the store`);
    if (rec.file) return fs.readFileSync(this.filePath(id));
    const bytes = this.store.dbs.blobs.getBinary(id);
    if (!bytes) throw new Error(`blob ${id} is missing from the store`);
    return bytes;
  }

  /** The file that holds a large blob, or undefined for an inline one. */
  fileOf(id: BlobId): string | undefined {
    return this.store.dbs.blobMeta.get(id)?.file ? this.filePath(id) : undefined;
  }

  /** fsync(2) of a blob kept as a file, and of its name (an inline one reaches the disk with lmdb's sync). */
  syncFile(id: BlobId): void {
    const file = this.fileOf(id);
    if (!file) return;
    for (const p of [file, path.dirname(file)]) {
      const fd = fs.openSync(p, 'r');
      try {
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
    }
  }

  /** Reads `length` bytes at `position` of an inline blob into `buf`. */
  readInline(id: BlobId, buf: Buffer, length: number, position: number): number {
    const bytes = this.store.dbs.blobs.getBinaryFast(id);
    if (!bytes) throw new Error(`blob ${id} is missing from the store`);
    if (position >= bytes.length) return 0;
    // lmdb's fast buffer is a window on a shared one that Buffer#copy refuses; a typed-array copy works.
    const part = bytes.subarray(position, Math.min(bytes.length, position + length));
    buf.set(part);
    return part.length;
  }

  /** Writes a blob's content to a new file (copy-up into scratch, replay into a directory). */
  copyTo(id: BlobId, dest: string): void {
    const file = this.fileOf(id);
    if (file) fs.copyFileSync(file, dest);
    else fs.writeFileSync(dest, this.get(id));
  }

  /**
   * Adds a blob whose bytes were checked against its id elsewhere (an
   * import): a large one's file is moved into place. Meant to run inside the
   * caller's transaction; a file moved in before a rollback has no record
   * and is only garbage (gc removes it).
   */
  adopt(id: BlobId, src: { bytes: Buffer } | { file: string }): void {
    if ('bytes' in src) {
      this.store.dbs.blobs.putSync(id, src.bytes);
      this.store.dbs.blobMeta.putSync(id, { size: src.bytes.length, file: false });
    } else {
      const dest = this.filePath(id);
      fs.mkdirSync(path.dirname(dest), { recursive: true });
      fs.renameSync(src.file, dest);
      this.store.dbs.blobMeta.putSync(id, { size: blobSize(id), file: true });
    }
    this.seen(id);
  }

  /** Every blob id held, in key order. */
  ids(): Iterable<BlobId> {
    return this.store.dbs.blobMeta.getKeys();
  }

  /**
   * Deletes blobs: records in one transaction, then the files of large
   * ones (a crash in between leaves files without records, which
   * `orphanFiles` finds). Returns the files to unlink after the caller's
   * transaction; call inside one.
   */
  removeRecords(ids: readonly BlobId[]): string[] {
    const files: string[] = [];
    for (const id of ids) {
      const rec = this.store.dbs.blobMeta.get(id);
      if (!rec) continue;
      if (rec.file) files.push(this.filePath(id));
      else this.store.dbs.blobs.removeSync(id);
      this.store.dbs.blobMeta.removeSync(id);
    }
    return files;
  }

  /** Files under blobs/ that no record names: leftovers of a crash (gc sweeps them). */
  *orphanFiles(): Generator<{ file: string; size: number }> {
    for (const dir of fs.readdirSync(this.store.blobDir)) {
      const sub = path.join(this.store.blobDir, dir);
      for (const name of fs.readdirSync(sub)) {
        const file = path.join(sub, name);
        const id = name.replace(/-/g, ':');
        if (/\.tmp\d+$/.test(name) || this.store.dbs.blobMeta.get(id) === undefined) {
          yield { file, size: fs.statSync(file, { throwIfNoEntry: false })?.size ?? 0 };
        }
      }
    }
  }

  private seen(id: BlobId): BlobId {
    for (const w of this.watchers) w.add(id);
    return id;
  }

  private writeNew(id: BlobId, bytes: Buffer): void {
    if (bytes.length <= INLINE_MAX) {
      this.store.txn(() => {
        this.store.dbs.blobs.putSync(id, bytes);
        this.store.dbs.blobMeta.putSync(id, { size: bytes.length, file: false });
      });
      return;
    }
    const dest = this.filePath(id);
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    const tmp = `${dest}.tmp${process.pid}`;
    fs.writeFileSync(tmp, bytes);
    fs.renameSync(tmp, dest);
    this.store.dbs.blobMeta.putSync(id, { size: bytes.length, file: true });
  }

  private filePath(id: BlobId): string {
    return path.join(this.store.blobDir, id.slice(0, 2), id.replace(/:/g, '-'));
  }
}

/** The size is part of the id: no store access needed. */
export function blobSize(id: BlobId): number {
  return Number(id.split(':')[1]);
}

export function hashFile(file: string): string {
  const fd = fs.openSync(file, 'r');
  try {
    // A small file in one read and one call: a streaming hasher costs more to set up than to run.
    if (fs.fstatSync(fd).size <= CHUNK) return hash64(fs.readFileSync(fd));
    const h = createHash64();
    const buf = Buffer.allocUnsafe(CHUNK);
    for (let n; (n = fs.readSync(fd, buf, 0, CHUNK, null)) > 0;) h.update(buf.subarray(0, n));
    return h.digest();
  } finally {
    fs.closeSync(fd);
  }
}

function filesEqual(a: string, b: string): boolean {
  const fa = fs.openSync(a, 'r');
  const fb = fs.openSync(b, 'r');
  try {
    const ba = Buffer.allocUnsafe(CHUNK);
    const bb = Buffer.allocUnsafe(CHUNK);
    for (;;) {
      const na = fs.readSync(fa, ba, 0, CHUNK, null);
      const nb = fs.readSync(fb, bb, 0, CHUNK, null);
      if (na !== nb || !ba.subarray(0, na).equals(bb.subarray(0, nb))) return false;
      if (na === 0) return true;
    }
  } finally {
    fs.closeSync(fa);
    fs.closeSync(fb);
  }
}
