import fs from 'node:fs';
import path from 'node:path';
import type { BlobId, BlobStore } from '../store/blobs.js';
import type { Attr } from './contract.js';
import type { FileEntry } from './entry.js';

/** Where an unmodified file's bytes are: a blob of the store, or a workspace file. */
export type Source = { blob: BlobId } | { disk: string } | { empty: true };

/**
 * A file some process holds open in an agent's tree. Until the first write
 * it reads from its source; the first write copies it up into a private
 * scratch file (DESIGN.md, "Writes"), where it stays until it is ingested
 * into the store. It follows renames (`path` changes) and outlives unlink
 * (`path` becomes null) for the processes that hold it.
 */
export class OpenFile {
  refs = 0;
  dirty = false;
  scratch: { fd: number; file: string } | null = null;
  /** stat(2) of what was opened, until the first write or chmod: what fstat answers (tar compares it with stat). */
  openedAttr: Attr | undefined;
  private sourceFd: number | null = null;

  constructor(
    public path: string | null,
    /** Attributes that survive until ingest: ino, mode, owner, mtime, base. */
    public meta: Omit<FileEntry, 'kind' | 'hash' | 'size'>,
    private src: Source,
    private sourceSize: number,
    private readonly blobs: BlobStore,
  ) {}

  size(): number {
    return this.scratch ? fs.fstatSync(this.scratch.fd).size : this.sourceSize;
  }

  read(buf: Buffer, length: number, position: number): number {
    if (this.scratch) return fs.readSync(this.scratch.fd, buf, 0, length, position);
    const src = this.src;
    if ('empty' in src) return 0;
    if ('blob' in src) {
      const file = this.blobs.fileOf(src.blob);
      if (!file) return this.blobs.readInline(src.blob, buf, length, position);
      this.sourceFd ??= fs.openSync(file, 'r');
    } else {
      this.sourceFd ??= fs.openSync(src.disk, 'r');
    }
    return fs.readSync(this.sourceFd, buf, 0, length, position);
  }

  write(buf: Buffer, length: number, position: number): number {
    const n = fs.writeSync(this.scratch!.fd, buf, 0, length, position);
    this.touch();
    return n;
  }

  truncate(size: number): void {
    // A no-op ftruncate is not free on ext4: it makes the close flush and the later unlink slow (10x on rewrites).
    if (fs.fstatSync(this.scratch!.fd).size !== size) fs.ftruncateSync(this.scratch!.fd, size);
    this.touch();
  }

  /** Copies the source into a new scratch file (or starts empty when it will be truncated anyway). */
  copyUp(scratchDir: string, name: string, empty: boolean): string {
    const file = path.join(scratchDir, name);
    const src = this.src;
    if (empty || 'empty' in src) fs.writeFileSync(file, '');
    else if ('blob' in src) this.blobs.copyTo(src.blob, file);
    else fs.copyFileSync(src.disk, file);
    this.scratch = { fd: fs.openSync(file, 'r+'), file };
    this.closeSource();
    return file;
  }

  /** After an ingest, further reads of a clean file can come from the new blob. */
  rebase(source: Source, size: number): void {
    this.src = source;
    this.sourceSize = size;
  }

  /** Where the bytes are read from until the first write. */
  get source(): Source {
    return this.src;
  }

  close(): void {
    this.closeSource();
    if (this.scratch) fs.closeSync(this.scratch.fd);
    this.scratch = null;
  }

  private touch(): void {
    this.dirty = true;
    this.meta.mtimeMs = Date.now();
  }

  private closeSource(): void {
    if (this.sourceFd !== null) fs.closeSync(this.sourceFd);
    this.sourceFd = null;
  }
}
