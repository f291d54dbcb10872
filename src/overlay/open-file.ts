import fs from 'node:fs';
import type { BlobId, BlobStore } from '../store/blobs.js';
import type { Scratch, ScratchFiles } from '../store/scratch.js';
import { SequentialWrite } from '../store/sequential-write.js';
import type { Attr, LentWrites } from './contract.js';
import type { FileEntry } from './entry.js';

/** A scratch file's mtime as this object keeps it: whole microseconds, as keepTime sets them (stat's double reads 123 µs as 122.9999). */
export function fileMtimeMs(st: fs.Stats): number {
  return Math.round(st.mtimeMs * 1000) / 1000;
}

/**
 * The mode bits a file's scratch file carries for it: the read and execute bits of the group and
 * the others, and the owner's execute bit, so that tar's chmod of the file it just made (0600 to
 * 0644 or 0755) needs no store transaction, and the addon can make it (the crash-recovery record
 * holds the rest). The scratch file's owner can always read and write it, so that the daemon can
 * read it back as any user; nobody else can write it (nor the blob it may become).
 */
export const MODE_ON_FILE = 0o155;

/** A file's mode from the mode recorded for it and its scratch file's mode. */
export function modeFrom(recorded: number, onFile: number): number {
  return (recorded & ~MODE_ON_FILE) | (onFile & MODE_ON_FILE);
}

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
  scratch: Scratch | null = null;
  /** stat(2) of what was opened, until the first write or chmod: what fstat answers (tar compares it with stat). */
  openedAttr: Attr | undefined;
  private sourceFd: number | null = null;
  /** The scratch file's size, kept here: only this object writes it (no fstat per getattr). */
  private scratchSize = 0;
  /** Its hash and disk writes while it is written front to back. */
  private sequential: SequentialWrite | null = null;
  /** Changed since its last ingest (writes, truncations, attributes; a lender's, once it gave the file back). */
  dirty = false;
  /** Written by somebody else too until returned (lend): its size and mtime are then the scratch file's own. */
  private lent = false;
  /** The lender's hash of the content, until this object changes it. */
  private lenderHash: { size: number; hash: string } | undefined;

  constructor(
    public path: string | null,
    /** Attributes that survive until ingest: ino, mode, owner, mtime, base. */
    public meta: Omit<FileEntry, 'kind' | 'hash' | 'size'>,
    private src: Source,
    private sourceSize: number,
    private readonly blobs: BlobStore,
  ) {}

  size(): number {
    this.refresh();
    return this.scratch ? this.scratchSize : this.sourceSize;
  }

  /**
   * The scratch file's descriptor, for writes (and mtimes) made elsewhere until `returned` (the
   * FUSE addon's own thread, src/fuse/libfuse3-adapter.ts): meanwhile its size and mtime are read
   * from the file.
   */
  lend(): number {
    this.lent = true;
    this.sequential = null;
    this.lenderHash = undefined;
    this.fromFile(); // the mtime the lender's cache starts from
    return this.scratch!.fd;
  }

  /** The lender is done: what it changed is this object's to store now. */
  returned(writes: LentWrites): void {
    this.fromFile();
    this.lent = false;
    if (writes.changed) this.dirty = true;
    this.lenderHash = writes.hashed;
  }

  /** Whether somebody else may be writing it right now (lend). */
  get isLent(): boolean {
    return this.lent;
  }

  /** A lent file's size and mtime, from the file itself. */
  refresh(): void {
    if (this.lent) this.fromFile();
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
    const fd = this.scratch!.fd;
    const n = fs.writeSync(fd, buf, 0, length, position);
    if (position + n > this.scratchSize) this.scratchSize = position + n;
    this.sequential?.wrote(fd, buf.subarray(0, n), position);
    this.touch();
    return n;
  }

  truncate(size: number): void {
    // A no-op ftruncate is not free on ext4: it makes the close flush and the later unlink slow (10x on rewrites).
    this.refresh();
    this.touch();
    if (this.scratchSize !== size) fs.ftruncateSync(this.scratch!.fd, size); // the kernel moves its mtime
    else this.keepTime();
    this.scratchSize = size;
    this.sequential?.truncated(size);
  }

  /** The xxhash64 of what the scratch file holds, when it was seen as written (else the ingest reads the file). */
  contentHash(): string | undefined {
    const lender = this.lenderHash;
    if (lender) return lender.size === this.size() ? lender.hash : undefined;
    return this.sequential?.hashOf(this.scratchSize);
  }

  /** chmod/chown/utimens of the open file: its attributes until ingest. */
  setMeta(meta: Partial<OpenFile['meta']>): void {
    Object.assign(this.meta, meta);
    this.openedAttr = undefined;
    if (!this.scratch) return;
    this.dirty = true;
    if ('mtimeMs' in meta) this.keepTime();
    if ('mode' in meta) this.keepMode();
  }

  /** Whether the crash-recovery record must change with `meta` (else the scratch file carries it: mtime, MODE_ON_FILE). */
  recordChangesWith(meta: Partial<OpenFile['meta']>): boolean {
    return Object.keys(meta).some((k) => k !== 'mtimeMs' && k !== 'mode')
      || (meta.mode !== undefined && modeFrom(meta.mode, 0) !== modeFrom(this.meta.mode, 0));
  }

  /** Copies the source into a new scratch file (or starts empty when it will be truncated anyway). */
  copyUp(scratch: ScratchFiles, empty: boolean): void {
    const src = this.src;
    if (empty || 'empty' in src) {
      this.scratch = scratch.empty();
      this.scratchSize = 0;
    } else {
      this.scratch = scratch.filled((file) => {
        if ('blob' in src) this.blobs.copyTo(src.blob, file);
        else fs.copyFileSync(src.disk, file);
      });
      this.scratchSize = fs.fstatSync(this.scratch.fd).size;
    }
    this.sequential = new SequentialWrite(this.scratchSize, scratch.writeback);
    this.closeSource();
    this.keepTime();
    this.keepMode();
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

  /** Stops reading its source; hands its scratch file (if any) to the caller, who disposes of it. */
  close(): Scratch | null {
    this.closeSource();
    const s = this.scratch;
    this.scratch = null;
    this.sequential = null;
    this.lent = false;
    this.lenderHash = undefined;
    return s;
  }

  /** A write or truncate: the kernel moves the scratch file's mtime too. */
  private touch(): void {
    this.dirty = true;
    this.lenderHash = undefined;
    this.meta.mtimeMs = Date.now();
  }

  /**
   * While the file is being written its mtime is also the scratch file's
   * own, which writes move as well, and so are the bits of its mode in
   * MODE_ON_FILE: after a crash, recovery takes them from there (a new time
   * or such a chmod needs no store transaction).
   */
  private fromFile(): void {
    const st = fs.fstatSync(this.scratch!.fd);
    this.scratchSize = st.size;
    this.meta.mtimeMs = fileMtimeMs(st);
    this.meta.mode = modeFrom(this.meta.mode, st.mode);
  }

  private keepMode(): void {
    fs.fchmodSync(this.scratch!.fd, (this.meta.mode & MODE_ON_FILE) | 0o600);
  }

  private keepTime(): void {
    // libuv keeps whole microseconds, truncating: half a microsecond more makes it round.
    const t = this.meta.mtimeMs / 1000 + 5e-7;
    fs.futimesSync(this.scratch!.fd, t, t);
  }

  private closeSource(): void {
    if (this.sourceFd !== null) fs.closeSync(this.sourceFd);
    this.sourceFd = null;
  }
}
