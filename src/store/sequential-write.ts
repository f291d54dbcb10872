import { createHash64, type Hash64 } from './hash.js';

/** Starts the disk writes of a byte range of a file, without waiting for them (sync_file_range). */
export type StartWriteback = (fd: number, offset: number, length: number) => void;

/** The disk writes of a file written front to back are started this many bytes at a time. */
export const WRITEBACK_STEP = 16 * 1024 * 1024;

/**
 * What is known of a scratch file while it is written front to back (a `dd`, a
 * download, a compiler's output), learnt from the writes themselves:
 *
 * - its xxhash64, computed as the bytes arrive, so the ingest at release
 *   need not read the file back (only for a file that started empty: the
 *   hash of copied-up content cannot be resumed). Any write elsewhere than
 *   at the front, or a truncation other than to 0 (a rewrite starts over)
 *   or to the front, drops it: the ingest then reads the file, as always.
 * - the disk writes of each completed WRITEBACK_STEP, started at once
 *   (`startWriteback`), so the final fsync finds little left to write and
 *   the page cache never holds a large backlog of our dirty pages.
 */
export class SequentialWrite {
  /** Bytes from 0 to here were written in order (or copied up). */
  private front: number;
  private hash: Hash64 | null;
  /** Disk writes were started for the bytes before this. */
  private started: number;

  constructor(size: number, private readonly startWriteback: StartWriteback | undefined) {
    this.front = size;
    this.started = size - (size % WRITEBACK_STEP);
    this.hash = size === 0 ? createHash64() : null;
  }

  /** `bytes` were written at `position` of the file open at `fd`. */
  wrote(fd: number, bytes: Uint8Array, position: number): void {
    if (position !== this.front) {
      this.hash = null;
      return;
    }
    this.hash?.update(bytes);
    this.front += bytes.length;
    if (this.startWriteback && this.front - this.started >= WRITEBACK_STEP) {
      const end = this.front - (this.front % WRITEBACK_STEP);
      this.startWriteback(fd, this.started, end - this.started);
      this.started = end;
    }
  }

  /** The file was truncated to `size`. */
  truncated(size: number): void {
    if (size === this.front) return;
    this.hash = size === 0 ? createHash64() : null;
    this.front = size;
    this.started = Math.min(this.started, size - (size % WRITEBACK_STEP));
  }

  /** The xxhash64 of the file's content when it is `size` bytes long, if every byte was seen in order. */
  hashOf(size: number): string | undefined {
    return this.hash && size === this.front ? this.hash.digest() : undefined;
  }
}
