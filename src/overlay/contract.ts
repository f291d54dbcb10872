/**
 * The contract between a FUSE adapter (src/fuse/, native/) and the overlay.
 * Small and explicit on purpose: both adapters (fuse-native and the libfuse 3
 * one) speak only this, never fuse-native's callback shapes. Paths are
 * relative to the mount root, '/'-separated, without a leading slash; the
 * root itself is ''. Every call is synchronous: the daemon never touches its
 * own mount, and sync calls on its own files are the fastest round trip
 * (FUSE-NOTES: 92 µs vs 161 µs async).
 */

export type Errno =
  | 'ENOENT' | 'EEXIST' | 'ENOTDIR' | 'EISDIR' | 'ENOTEMPTY' | 'EINVAL'
  | 'EACCES' | 'EPERM' | 'EXDEV' | 'EBADF' | 'ENAMETOOLONG' | 'EIO'
  | 'ENOSPC' | 'EROFS' | 'ELOOP' | 'ENOSYS' | 'EBUSY';

/** A filesystem error the adapter turns into -errno. */
export class FsError extends Error {
  constructor(readonly code: Errno, message?: string) {
    // ENOENT is the common answer of a lookup (module resolution probes many missing paths): no stack trace to build.
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(message ?? code);
    Error.stackTraceLimit = limit;
    this.name = 'FsError';
  }
}

export const S_IFMT = 0o170000;
export const S_IFREG = 0o100000;
export const S_IFDIR = 0o040000;
export const S_IFLNK = 0o120000;

/** What stat(2) shows. `mode` includes the file-type bits. */
export interface Attr {
  ino: number;
  mode: number;
  size: number;
  nlink: number;
  uid: number;
  gid: number;
  atimeMs: number;
  mtimeMs: number;
  ctimeMs: number;
}

export interface DirEntryInfo {
  name: string;
  /** File-type bits of st_mode (S_IFREG, S_IFDIR, S_IFLNK). */
  type: number;
}

export interface StatFs {
  bsize: number; frsize: number; blocks: number; bfree: number; bavail: number;
  files: number; ffree: number; favail: number; namemax: number;
}

/** Open flags the overlay cares about (Linux values). */
export const O_ACCMODE = 3;
export const O_WRONLY = 1;
export const O_RDWR = 2;
export const O_CREAT = 0o100;
export const O_EXCL = 0o200;
export const O_TRUNC = 0o1000;
export const O_APPEND = 0o2000;

/** rename(2) flags. */
export const RENAME_NOREPLACE = 1;

/** What an adapter's own writes to a lent file (TreeOps.lendFd) came to, told when it gives it back. */
export interface LentWrites {
  /** It wrote, or set a time. */
  changed: boolean;
  /** The xxhash64 of the file's first `size` bytes, when it saw every one written in order into the file lent empty. */
  hashed?: { size: number; hash: string };
}

/** One agent's working tree, as a FUSE adapter sees it. */
export interface TreeOps {
  getattr(path: string): Attr;
  /** stat of an open file: works after the file was renamed or unlinked. */
  fgetattr(fh: number): Attr;
  readdir(path: string): DirEntryInfo[];
  readlink(path: string): string;
  /** Throws EACCES etc. as access(2) would for the given mask (R_OK=4, W_OK=2, X_OK=1, F_OK=0). */
  access(path: string, mask: number, uid: number, gid: number): void;

  open(path: string, flags: number): number;
  create(path: string, mode: number, flags: number, uid: number, gid: number): number;
  read(fh: number, buf: Buffer, length: number, position: number): number;
  write(fh: number, buf: Buffer, length: number, position: number): number;
  ftruncate(fh: number, size: number): void;
  /**
   * The descriptor of the file a writable handle writes (copied up first), for writes (and new
   * mtimes, and chmods within MODE_ON_FILE's bits, set as `(mode & MODE_ON_FILE) | 0o600`) the adapter
   * makes to it itself until returnFd, which comes before the handle's release and whenever the
   * tree recalls it (MountOptions.watchSettle). Meanwhile the tree reads the file's size, mtime and
   * those mode bits from the file. Undefined if the file is lent already (through another handle).
   */
  lendFd(fh: number): number | undefined;
  returnFd(fh: number, writes: LentWrites): void;
  /**
   * After a change at `p` from outside the adapter's requests, once the adapter let go of its own
   * handles there: a written file open at `p` whose writes are all stored stops standing for the
   * path (what still holds it reads what it held), so the next open finds the path's content. An
   * adapter whose handles live on across the change (libfuse 2: the writer's own, which follows
   * renames) does not call it.
   */
  standAside(p: string): void;
  /** Makes what was written so far durable on the disk (`datasync` ignored); the put event follows at release. */
  fsync(fh: number): void;
  release(fh: number): void;
  /** Several handles at once (an idle sweep): the puts of the files they close commit together, in this order. */
  releaseAll(fhs: readonly number[]): void;

  truncate(path: string, size: number): void;
  unlink(path: string): void;
  mkdir(path: string, mode: number, uid: number, gid: number): void;
  rmdir(path: string): void;
  rename(from: string, to: string, flags: number): void;
  symlink(target: string, path: string, uid: number, gid: number): void;
  chmod(path: string, mode: number): void;
  chown(path: string, uid: number, gid: number): void;
  utimens(path: string, atimeMs: number, mtimeMs: number): void;
  statfs(): StatFs;
}
