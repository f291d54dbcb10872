import fs from 'node:fs';
import path from 'node:path';
import { INLINE_MAX } from './blobs.js';
import type { StartWriteback } from './sequential-write.js';

/** A private file the writes to an open file go to until they are ingested (DESIGN.md, "Writes"). */
export interface Scratch {
  fd: number;
  file: string;
}

/** Empty scratch files kept for reuse. */
const SPARE_MAX = 4096;

/**
 * The scratch files of one state directory. Creating a file on ext4 right
 * after deleting others is slow (it scans past recently deleted inodes:
 * ~17% of the daemon's time when `tar -x` unpacked small files), so the
 * scratch file of a small file is emptied and kept for the next new file
 * instead of being deleted. Only files whose content went inline into the
 * store are kept: a large one's file became its blob (hard link). Spare
 * files have no crash-recovery record, so a restart deletes them like any
 * unrecorded scratch file. A kept file is closed (and reopened when
 * reused): ext4 flushes a file truncated to zero at its last close, which
 * is cheap while it is empty and would not be once it held a large file.
 */
export class ScratchFiles {
  /** Names of empty scratch files to reuse. */
  private readonly spare: string[] = [];
  private seq = 0;
  /**
   * Starts a range's disk writes without waiting (sync_file_range), for
   * files written front to back (SequentialWrite). Set by a FUSE adapter
   * that can (libfuse 3's addon); Node itself cannot.
   */
  writeback: StartWriteback | undefined;

  constructor(private readonly dir: string) {}

  /** A new empty scratch file, open for reading and writing. */
  empty(): Scratch {
    const reused = this.spare.pop();
    if (reused) return { fd: fs.openSync(reused, 'r+'), file: reused };
    const file = this.newName();
    return { fd: fs.openSync(file, 'wx+'), file };
  }

  /** A new scratch file holding what `fill` writes to the given name, open for reading and writing. */
  filled(fill: (file: string) => void): Scratch {
    const file = this.newName();
    fill(file);
    return { fd: fs.openSync(file, 'r+'), file };
  }

  /**
   * A scratch file nobody writes any more, whose content is in the store (or
   * no longer wanted): kept for reuse when it is small, else closed and
   * deleted. `size` is its current size.
   */
  release(s: Scratch, size: number): void {
    const keep = size <= INLINE_MAX && this.spare.length < SPARE_MAX;
    if (keep && size > 0) fs.ftruncateSync(s.fd, 0);
    fs.closeSync(s.fd);
    if (keep) this.spare.push(s.file);
    else fs.rmSync(s.file, { force: true });
  }

  /** Deletes the spare files (the store is closing). */
  close(): void {
    for (const file of this.spare.splice(0)) fs.rmSync(file, { force: true });
  }

  private newName(): string {
    return path.join(this.dir, `${process.pid}-${Date.now().toString(36)}-${++this.seq}`);
  }
}
