/**
 * What both FUSE adapters share: the options and handle of a mount, errno
 * values, turning a tree's error into -errno, the fallback logger, and
 * getting rid of a mount for good.
 */
import { FsError, type Errno } from '../overlay/contract.js';
import { fuseMountsAt, lazyUnmount, type FuseMount } from './mount-table.js';

export interface MountOptions {
  /** The mount's source as /proc/mounts shows it. Default `cowfs`. */
  fsname?: string;
  /** Let other users (a sandboxed agent's uid) use the mount; needs root or user_allow_other. */
  allowOther?: boolean;
  /** libfuse's debug mode: every request printed to stderr. */
  debug?: boolean;
  /**
   * The kernel's writeback cache: write() returns once in the page cache and the pages reach the
   * adapter later, in large writes. libfuse 3 only (libfuse 2's high-level API cannot ask for it);
   * on unless told (the daemon passes its workspace setting, off by default).
   */
  writeback?: boolean;
  /**
   * Seconds the kernel may trust attributes, names and "no such name"
   * answers without asking again (attr_timeout, entry_timeout,
   * negative_timeout). Default 1 s each, not the 3600 s that FUSE-NOTES
   * measured as best: writes by any process through this mount go through
   * the kernel, which updates its caches itself, but a parent agent's
   * commit and the cascade rebase change a child's tree under the kernel
   * (and fuse-native cannot send invalidations), so whatever the kernel
   * cached is stale until it times out. 1 s keeps that window short while
   * still absorbing the bursts of lookups and stats that `git status`,
   * `find` or module resolution make.
   */
  attrTimeout?: number;
  entryTimeout?: number;
  negativeTimeout?: number;
  /**
   * How the kernel's page cache of a file survives an open. libfuse 2
   * otherwise makes the kernel drop it at every open (a warm re-read of
   * 1 GiB: 28x native instead of 1.8x, FUSE-NOTES).
   *
   * Default (false): `auto_cache`. At open, libfuse compares the file's
   * mtime and size with what it saw last (asking us again only if that is
   * older than attr_timeout) and keeps the cache only when they match. Safe
   * for our trees: a parent's commit or a rebase that changes a child's
   * file changes its mtime, and it is seen at the next open.
   *
   * true: `kernel_cache`, the cache is always kept. Only safe for trees
   * that never change under the kernel: the kernel drops cached pages on
   * its own only when a refreshed size differs (libfuse 2.9 has no
   * auto_inval_data, and fuse-native cannot send invalidations), so a
   * same-size change from a rebase would be read stale until the pages
   * are evicted.
   */
  kernelCache?: boolean;
  /** Where unexpected errors (anything but FsError) are logged; pino-compatible. Default: JSON lines on stderr. */
  logger?: AdapterLogger;
  /** How long to wait for the kernel's INIT before giving up on the mount. Default 15 s. */
  initTimeoutMs?: number;
  /**
   * How the adapter learns that paths of the tree changed without a request
   * through this mount (a cascade rebase, a resolve, an undo): it subscribes
   * a listener and gets back an unsubscribe function. Used by adapters that
   * can tell the kernel to drop what it cached (libfuse 3).
   */
  watchChanges?: (listener: (paths: readonly string[]) => void) => () => void;
  /**
   * The same changes, told just before they are made (a superset of the
   * paths; not changes on disk): the files the kernel holds there may be
   * open, and whoever holds one keeps reading what it opened. Used by
   * adapters that open files only at their first read (libfuse 3).
   */
  watchBeforeChange?: (listener: (paths: readonly string[]) => void) => () => void;
  /**
   * Told just before the tree stores its open files outside this mount's requests (a commit, a
   * rebase, an undo, a landing…): an adapter that lent a file (TreeOps.lendFd) gives it back first,
   * so none of its writes lands between what is stored and the change that follows.
   */
  watchSettle?: (listener: () => void) => () => void;
}

export interface AdapterLogger {
  error(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export interface AdapterStats {
  /** Requests that reached JS, by operation. */
  ops: Record<string, number>;
  /** Largest single write and read the kernel sent (131072 when big_writes/max_read took effect). */
  maxWrite: number;
  maxRead: number;
  /** Unexpected errors answered EIO. */
  eio: number;
  /** Files open right now, through this mount. */
  openHandles: number;
  /** Node ids the kernel holds lookups of (adapters that hand out node ids: libfuse 3). */
  nodes?: number;
  /** When the last request reached JS (ms since the epoch; 0: none yet), where nodes is given. */
  lastRequestAt?: number;
}

export interface MountHandle {
  readonly mountpoint: string;
  /** The `-o` string handed to libfuse. */
  readonly options: string;
  /** The mount's `major:minor` (the minor is its FUSE connection number). */
  readonly device: string;
  /** Whether the mount asked the kernel for its writeback cache (MountOptions.writeback). */
  readonly writeback: boolean;
  stats(): AdapterStats;
  /**
   * Resolves once the kernel has been told of every change announced so far through
   * `watchChanges` (invalidations are written by another thread). The daemon answers a request
   * after it, so what the caller runs next sees the new view.
   */
  notified(): Promise<void>;
  /**
   * Asks the kernel to let go of every name it holds in the mount but the top-level names in
   * `keep` (adapters that hand out node ids: libfuse 3), as drop_caches would: the nodes go at
   * their FORGETs, files open stay served, and the next access looks names up again. How the
   * daemon keeps its memory bounded (daemon/kernel-cache-budget.ts). Returns the entries invalidated.
   */
  dropKernelCache?(keep: ReadonlySet<string>): number;
  /**
   * Unmounts, also when the mount is busy (a lazy unmount: the name is gone
   * at once, processes keep what they hold open until they close it), and
   * makes sure the mount is gone from the mount table. Idempotent.
   */
  unmount(): Promise<void>;
}

/** Linux errno values, negated as libfuse wants them. */
export const ERRNO: Record<Errno, number> = {
  EPERM: -1, ENOENT: -2, EIO: -5, EBADF: -9, EACCES: -13, EBUSY: -16, EEXIST: -17, EXDEV: -18,
  ENOTDIR: -20, EISDIR: -21, EINVAL: -22, ENOSPC: -28, EROFS: -30, ENAMETOOLONG: -36, ENOSYS: -38,
  ENOTEMPTY: -39, ELOOP: -40,
};

export function isFsError(err: unknown): err is FsError {
  if (err instanceof FsError) return true;
  // A tree loaded through another module instance (a test fixture, a worker) throws a different FsError class.
  const e = err as { name?: unknown; code?: unknown } | null;
  return !!e && e.name === 'FsError' && typeof e.code === 'string' && e.code in ERRNO;
}

export const defaultLogger: AdapterLogger = {
  error: (obj, msg) => process.stderr.write(`${JSON.stringify({ level: 'error', ...serializable(obj), msg })}\n`),
  warn: (obj, msg) => process.stderr.write(`${JSON.stringify({ level: 'warn', ...serializable(obj), msg })}\n`),
};

function serializable(obj: object): object {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) {
    out[k] = v instanceof Error ? { type: v.name, message: v.message, stack: v.stack } : v;
  }
  return out;
}

/**
 * libfuse's option parser splits on ',' and takes `\,` as a literal comma
 * (checked: the source in /proc/mounts keeps it). A backslash does not come
 * through unchanged, so names with one are refused.
 */
export function escapeOption(v: string): string {
  if (v.includes('\\')) throw new Error(`fsname ${JSON.stringify(v)}: a backslash cannot be passed to libfuse`);
  return v.replace(/,/g, '\\,');
}

/** Lazily unmounts until the mount (by device, when known) is gone from the mount table. */
export async function unmountKernel(mountpoint: string, device: string): Promise<void> {
  const ours = (): FuseMount | undefined =>
    fuseMountsAt(mountpoint).find((m) => (device ? m.device === device : true));
  const said: string[] = [];
  for (let attempt = 0; attempt < 3 && ours(); attempt++) {
    said.push(...(await lazyUnmount(mountpoint)));
  }
  if (ours()) throw new Error(`cannot unmount ${mountpoint}: ${said.join('; ') || 'still mounted'}`);
}

