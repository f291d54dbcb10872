/**
 * The native addon of native/ (libfuse 3's low-level API), as TypeScript
 * sees it. Loading throws when the addon was not built or libfuse3 is
 * missing; adapters.ts then falls back to libfuse 2.
 */
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { packageRoot } from '../package-root.js';

/** Request kinds; the same numbers as the enum in native/cowfs_fuse.c. */
export const Op = {
  INIT: 0, EXIT: 1, LOOKUP: 2, FORGET: 3, GETATTR: 4, SETATTR: 5, READLINK: 6, MKDIR: 7,
  UNLINK: 8, RMDIR: 9, SYMLINK: 10, RENAME: 11, READ: 12, WRITE: 13, RELEASE: 14, FSYNC: 15,
  READDIR: 16, STATFS: 17, CREATE: 18, READDIRPLUS: 19,
} as const;

/** Session features (bit flags of `mount`). */
export const Feature = { WRITEBACK: 1, READDIRPLUS: 2, DEBUG: 8 } as const;

/** Flags of a created file's open handle (replyCreate). */
export const OpenReply = { KEEP_CACHE: 1, DIRECT_IO: 2, NOFLUSH: 4 } as const;

/** An opaque native pointer (a request or a session). */
export type Native = { readonly __native: unique symbol };

/**
 * Called on the JS thread (from drain) for every request: `req` is undefined for those
 * that need no answer (INIT, EXIT, FORGET). `n` holds the request's numbers;
 * what each means depends on `op` (see native/cowfs_fuse.c). `data` (a WRITE's) is valid only
 * until dispatch returns: a large one is the addon's own memory, detached afterwards (it reads as empty).
 */
export type Dispatch = (
  op: number, req: Native | undefined, ino: number, name1: string | undefined, name2: string | undefined,
  data: Buffer | undefined, n0: number, n1: number, n2: number, n3: number, n4: number, n5: number, n6: number, n7: number,
) => void;

/** Attributes as the reply functions take them: ino, mode, nlink, uid, gid, size, atimeMs, mtimeMs, ctimeMs. */
type AttrArgs = [number, number, number, number, number, number, number, number, number];

/** COWFS_FUSE_ABI of native/cowfs_fuse.c this file speaks. */
const ABI = 7;

export interface Binding {
  /** The addon's COWFS_FUSE_ABI. */
  abi: number;
  /**
   * Requests wait in a queue of the session; `wake` is called (on the JS thread) when some start
   * waiting while nobody drains them, and `drain` hands them to `dispatch`.
   */
  mount(mountpoint: string, options: string, features: number, maxWrite: number, dispatch: Dispatch, wake: () => void): Native;
  /**
   * Dispatches queued requests for up to `budgetUs`, waiting up to `spinUs` for the next once the
   * queue is empty (unless another session's requests wait). True: requests remain, drain again
   * soon (no wake comes for them).
   */
  drain(session: Native, budgetUs: number, spinUs: number): boolean;
  exit(session: Native): void;
  close(session: Native): void;
  /** Drops the kernel's cache of a node (no name) or of the name `name` in directory `ino`. Never blocks. */
  invalidate(session: Native, ino: number, name?: string): void;
  /** [ever queued, ever written to the kernel] invalidations (undefined once the session is closed). */
  notes(session: Native): [number, number] | undefined;
  /** GETATTR of `ino` is answered in C with these attributes until dropAttr. */
  cacheAttr(session: Native, ino: number, ...rest: [...AttrArgs, number]): void;
  dropAttr(session: Native, ino: number): void;
  /**
   * Directory `ino` was just made (empty): a LOOKUP there of a name not added since is answered
   * "no such name" in C, with `timeout`, until forgetNames.
   */
  knowNames(session: Native, ino: number, timeout: number): void;
  /** `name` is about to be made in directory `ino` (nothing if the addon knows no names of it). */
  addName(session: Native, ino: number, name: string): void;
  /** Names of `ino` may come otherwise than through the mount: its LOOKUPs go to JavaScript again. */
  forgetNames(session: Native, ino: number): void;
  replyErr(req: Native, errno: number): void;
  replyEntry(req: Native, nodeid: number, ...rest: [...AttrArgs, number, number]): void;
  replyCreate(req: Native, nodeid: number, ...rest: [...AttrArgs, number, number, number, number]): void;
  replyAttr(req: Native, ...rest: [...AttrArgs, number]): void;
  replyBuf(req: Native, buf: Buffer, length: number): void;
  replyReadlink(req: Native, target: string): void;
  replyWrite(req: Native, count: number): void;
  replyStatfs(req: Native, bsize: number, frsize: number, blocks: number, bfree: number, bavail: number,
    files: number, ffree: number, favail: number, namemax: number): void;
  replyDir(req: Native, names: string[], types: number[], size: number, offset: number): void;
  /**
   * READDIRPLUS's entries from index `offset` on: a node id per name (0: none, only the name is
   * listed) and 9 attribute numbers per name in `attrs` (AttrArgs; with id 0 only the mode's type).
   * Returns how many entries were sent: the kernel holds a lookup of each sent with an id.
   */
  replyDirPlus(req: Native, names: string[], ids: number[], attrs: Float64Array, size: number, offset: number,
    timeout: number): number;
  /**
   * sync_file_range(SYNC_FILE_RANGE_WRITE): starts a range's disk writes without waiting. Missing
   * from an addon built before it (the ABI did not change for it): then nothing is started early.
   */
  syncFileRange?(fd: number, offset: number, length: number): void;
  /**
   * `ino`'s WRITEs are written to `fd` by the addon itself, on its own thread, until stopWriting
   * (no round trip to JavaScript; its cached attributes follow the file). Only without the
   * writeback cache.
   */
  writeTo(session: Native, ino: number, fd: number): void;
  /**
   * `ino`'s WRITEs come to JavaScript again; returns once none is being written (then `fd` may be
   * closed), with [changes the addon made (as `written`), bytes written in order from the start of
   * a file lent empty, their xxhash64 (undefined once a write came elsewhere)]; undefined if it
   * was not lent.
   */
  stopWriting(session: Native, ino: number): [number, number, string | undefined] | undefined;
  /**
   * The changes the addon made to `ino` since writeTo: bytes written plus times set (it answers a
   * SETATTR of the times of a lent file too); -1 if it is not lent.
   */
  written(session: Native, ino: number): number;
  /** [WRITEs the addon wrote itself, the largest one's size]. */
  writesHere(session: Native): [number, number];
}

export function loadBinding(): Binding {
  const addon = path.join(packageRoot(), 'native', 'build', 'Release', 'cowfs_fuse.node');
  if (!fs.existsSync(addon)) throw new Error(`${addon} is not built (run scripts/setup.sh)`);
  const b = createRequire(import.meta.url)(addon) as Binding;
  // An addon built before the request numbers changed would answer writes as releases.
  if (b.abi !== ABI) throw new Error(`${addon} is out of date (ABI ${String(b.abi)}, want ${ABI}): run scripts/setup.sh`);
  return b;
}
