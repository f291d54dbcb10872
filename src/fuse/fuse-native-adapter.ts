/**
 * The libfuse 2 adapter: kernel requests, as fuse-native 2.2.6 delivers them,
 * turned into calls of the overlay's contract (`TreeOps`, src/overlay/contract.ts).
 *
 * fuse-native runs libfuse's multithreaded loop in C and hands every request
 * to the one JS thread; a handler answers through `signal(result, ...)`,
 * where a negative result is -errno. We subclass fuse-native's `Fuse` and
 * replace its `_op_*` request handlers (the layer that turns the native
 * arguments into its callback API) with our own, because its callback API
 * loses things the contract needs:
 *
 * - `fgetattr` is answered by `ops.getattr(path)`: the file handle is dropped,
 *   so an open file that was renamed or unlinked cannot be stat'ed. We call
 *   `tree.fgetattr(fh)`.
 * - `utimens`: the C side passes the access time twice and never the
 *   modification time. The real mtime is still in the request's thread-local
 *   struct (the Buffer fuse-native hands every handler as its first
 *   argument); we read it from there, after checking that the atime at its
 *   offset matches the argument, and fall back to atime if the layout ever
 *   differs (logged once). Times travel in milliseconds both ways.
 * - `readdir` can carry a stat per name; with the type bits filled in the
 *   kernel gets real d_type values (fuse-native's own callers usually leave
 *   them out, and `find`/`git` then stat every entry).
 * - Every request gets a 15 s timer by default (`timeout`), a setTimeout per
 *   call; our handlers are synchronous, so we turn it off.
 *
 * What fuse-native (libfuse 2.9, protocol 7.19, high-level API) cannot give
 * us at all, and how we cope:
 *
 * - the caller's uid/gid (fuse_get_context is not exposed): files, dirs and
 *   symlinks are created owned by the owner of their parent directory (an
 *   agent working in a user's workspace creates files of that user, which is
 *   what an unprivileged agent needs to write them again).
 * - `create` does not get the open flags: it is called with O_CREAT|O_RDWR.
 * - utimens of one time only (tar's futimens(fd, {UTIME_OMIT, mtime}) of
 *   every file it unpacks, `touch -m`): libfuse 2 drops them, answering
 *   success, unless the filesystem sets flag_utime_omit_ok, which
 *   fuse-native does not. We load fuse-native's addon as native/fuse2/
 *   builds it from fuse-native's source with the flag set.
 * - rename flags: libfuse 2 has no rename2; the kernel itself answers EINVAL
 *   to renameat2 with flags (RENAME_NOREPLACE, RENAME_EXCHANGE), and tools
 *   fall back. `rename` is always called with flags 0.
 * - inode numbers and file handles are 32-bit: larger inode numbers are
 *   folded, and the tree's file handles are kept in a table here (the kernel
 *   sees small integers).
 * - unlinking (or renaming over) a file that is open makes libfuse rename it
 *   to `.fuse_hiddenXXXXXXXXXXXXXXXX` instead, and unlink that name at the
 *   last release. We turn that rename back into `tree.unlink(path)` (the
 *   tree keeps open files alive by handle, as the contract says), answer the
 *   hidden name from the open handle, and swallow its final unlink: the
 *   tree and its event log never see the hidden name.
 *
 * Requests we leave unimplemented on purpose, so libfuse answers ENOSYS in C
 * without calling into JS and the kernel stops sending them:
 * flush (FUSE-NOTES: no FLUSH on every close; the overlay makes written data
 * durable without it), getxattr/listxattr/setxattr/removexattr (the kernel
 * asks GETXATTR security.capability before every write until told ENOSYS;
 * callers then see EOPNOTSUPP), fsyncdir, opendir/releasedir (libfuse keeps
 * the directory handle itself), mknod, link (the contract has no hard links;
 * `ln` reports "Function not implemented", git falls back to rename).
 */
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import {
  FsError, O_CREAT, O_RDWR, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG,
  type Attr, type TreeOps,
} from '../overlay/contract.js';
import {
  defaultLogger, ERRNO, escapeOption, isFsError, unmountKernel,
  type AdapterLogger, type AdapterStats, type MountHandle, type MountOptions,
} from './adapter-common.js';
import { packageRoot } from '../package-root.js';
import { fuseMountsAt, lazyUnmount } from './mount-table.js';

export type { AdapterStats, MountHandle, MountOptions } from './adapter-common.js';

// ---------------------------------------------------------------- fuse-native

type Signal = (result: number, ...args: unknown[]) => void;
type NativeHandler = (nativeLocals: Buffer, opCode: number, ...args: unknown[]) => void;

interface FuseBase {
  readonly mnt: string;
  _thread: Buffer | null;
  _handlers: NativeHandler[];
  _openCallback: ((err: Error | null) => void) | null;
  mount(cb: (err: Error | null) => void): void;
  unmount(cb: (err: Error | null) => void): void;
}

interface FuseClass {
  new (mnt: string, ops: Record<string, unknown>, opts: Record<string, unknown>): FuseBase;
  EIO: number;
}

interface FuseBinding {
  op_utimens: number;
  fuse_native_unmount(mnt: string, thread: Buffer): void;
}

const require = createRequire(import.meta.url);
/**
 * fuse-native's addon as native/fuse2/ builds it from fuse-native's source,
 * with libfuse's utime_omit flag set (see there): fuse-native loads it
 * through node-gyp-build's override of where a package's build is.
 */
const ownBuild = path.join(packageRoot(), 'native', 'fuse2');
const ownAddon = path.join(ownBuild, 'build', 'Release', 'fuse_native.node');
if (!fs.existsSync(ownAddon)) throw new Error(`${ownAddon} is not built (run scripts/setup.sh)`);
const Fuse = withEnv('FUSE_NATIVE_PREBUILD', ownBuild, () => require('fuse-native') as FuseClass);
// The same addon fuse-native loaded (require caches it by path); needed to
// release the native mount state after we unmounted ourselves.
const binding = require(ownAddon) as FuseBinding;

function withEnv<T>(name: string, value: string, fn: () => T): T {
  const before = process.env[name];
  process.env[name] = value;
  try {
    return fn();
  } finally {
    if (before === undefined) delete process.env[name];
    else process.env[name] = before;
  }
}

const EIO = -5;
const EBADF = -9;

/** The ops fuse-native should register with libfuse; the handlers themselves are our `_op_*` methods. */
const IMPLEMENTED = [
  'init', 'statfs', 'getattr', 'fgetattr', 'readdir', 'readlink', 'access', 'open', 'create', 'read',
  'write', 'truncate', 'ftruncate', 'fsync', 'release', 'unlink', 'mkdir', 'rmdir', 'rename', 'symlink',
  'chmod', 'chown', 'utimens',
] as const;

const TWO32 = 4294967296;
/**
 * timespec_to_uint64() of UTIME_OMIT (tv_sec 0, tv_nsec 2^30-2): 1073 ms. UTIME_NOW would read the
 * same; native/fuse2/ replaces it with the time itself before it reaches fuse-native.
 */
const UTIME_OMIT_MS = 1073;
/** Offsets of `atime` and `mtime` (size_t, ms) in fuse-native's fuse_thread_locals_t on 64-bit Linux. */
const LOCALS_ATIME = 104;
const LOCALS_MTIME = 112;
/** libfuse's name for an open file that was unlinked: `.fuse_hidden%08x%08x`. */
const HIDDEN_NAME = /^\.fuse_hidden[0-9a-f]{16}$/;
const FUSE_UNKNOWN_INO = 0xffffffff;

function rel(p: string): string {
  return p.length === 1 ? '' : p.slice(1);
}

function parentOf(p: string): string {
  const i = p.lastIndexOf('/');
  return i < 0 ? '' : p.slice(0, i);
}

function baseOf(p: string): string {
  return p.slice(p.lastIndexOf('/') + 1);
}

/** 32-bit inode numbers only reach the kernel: fold larger ones rather than truncate. */
function ino32(ino: number): number {
  return ino <= 0xffffffff ? ino : ((ino % TWO32) ^ Math.floor(ino / TWO32)) >>> 0;
}

function setU64(a: Uint32Array, i: number, n: number): void {
  const v = n > 0 ? Math.round(n) : 0;
  const lo = v % TWO32;
  a[i] = lo;
  a[i + 1] = (v - lo) / TWO32;
}

/**
 * fuse-native's stat layout (getStatArray in its index.js): mode, uid, gid,
 * size (2 words), dev, nlink, ino, rdev, blksize, blocks (2), atime (2),
 * mtime (2), ctime (2), times in ms. fuse-native's own helper accepts Date
 * objects or ms numbers; we fill the array directly from Attr's ms fields.
 */
function statArray(a: Attr): Uint32Array {
  const s = new Uint32Array(18);
  s[0] = a.mode;
  s[1] = a.uid;
  s[2] = a.gid;
  setU64(s, 3, a.size);
  s[6] = a.nlink;
  s[7] = ino32(a.ino);
  s[9] = 4096;
  setU64(s, 10, Math.ceil(a.size / 512));
  setU64(s, 12, a.atimeMs);
  setU64(s, 14, a.mtimeMs);
  setU64(s, 16, a.ctimeMs);
  return s;
}

/** One shared stat per entry type for readdir: only the type bits (d_type) and an unknown d_ino matter. */
function typeStat(type: number): Uint32Array {
  const s = new Uint32Array(18);
  s[0] = type;
  s[7] = FUSE_UNKNOWN_INO;
  return s;
}
const DIRENT_STAT = new Map<number, Uint32Array>([
  [0, typeStat(0)], [S_IFDIR, typeStat(S_IFDIR)], [S_IFREG, typeStat(S_IFREG)], [S_IFLNK, typeStat(S_IFLNK)],
]);
const DOT_STAT = DIRENT_STAT.get(S_IFDIR)!;

/** Open files: the kernel's file handle (a small integer) → the tree's, and the path libfuse knows it by. */
class HandleTable {
  private treeFh: number[] = [0];
  private paths: (string | null)[] = [null];
  private free: number[] = [];
  count = 0;

  add(treeFh: number, p: string): number {
    const fh = this.free.pop() ?? this.treeFh.length;
    this.treeFh[fh] = treeFh;
    this.paths[fh] = p;
    this.count++;
    return fh;
  }

  /** The tree's handle; throws EBADF for a handle that is not open. */
  get(fh: number): number {
    if (!this.has(fh)) throw new FsError('EBADF', `unknown file handle ${fh}`);
    return this.treeFh[fh]!;
  }

  has(fh: number): boolean {
    return fh > 0 && fh < this.paths.length && typeof this.paths[fh] === 'string';
  }

  remove(fh: number): void {
    if (!this.has(fh)) return;
    this.paths[fh] = null;
    this.treeFh[fh] = 0;
    this.free.push(fh);
    this.count--;
  }

  /** Handles open on exactly `p`. */
  openOn(p: string): number[] {
    const out: number[] = [];
    for (let fh = 1; fh < this.paths.length; fh++) if (this.paths[fh] === p) out.push(fh);
    return out;
  }

  /** Follows a rename: handles on `from` or below it now live under `to`. */
  renamed(from: string, to: string): void {
    if (this.count === 0) return;
    const prefix = `${from}/`;
    for (let fh = 1; fh < this.paths.length; fh++) {
      const p = this.paths[fh];
      if (p === from) this.paths[fh] = to;
      else if (p && p.startsWith(prefix)) this.paths[fh] = to + p.slice(from.length);
    }
  }
}

class CowFuse extends (Fuse as unknown as new (mnt: string, ops: Record<string, unknown>, opts: Record<string, unknown>) => FuseBase) {
  readonly counts: Record<string, number> = Object.create(null);
  maxWrite = 0;
  maxRead = 0;
  eio = 0;
  readonly handles = new HandleTable();
  /** Hidden names (see the file comment) → the path they had; answered from their open handle. */
  private readonly hidden = new Map<string, string>();
  /** The thread-locals buffer of the utimens request being handled. */
  private utimensLocals: Buffer | null = null;
  private utimensLayoutOk: boolean | null = null;
  private readonly uid = process.getuid?.() ?? 0;
  private readonly gid = process.getgid?.() ?? 0;
  /** Set by mountTree once the mount is up: the device to make sure is gone at unmount. */
  device = '';

  constructor(mnt: string, opts: Record<string, unknown>, private readonly tree: TreeOps, private readonly log: AdapterLogger) {
    super(mnt, Object.fromEntries(IMPLEMENTED.map((op) => [op, true])), opts);
    for (const op of IMPLEMENTED) this.counts[op] = 0;
    const original = this._handlers[binding.op_utimens]!;
    this._handlers[binding.op_utimens] = (locals, opCode, ...args) => {
      this.utimensLocals = locals;
      try {
        original(locals, opCode, ...args);
      } finally {
        this.utimensLocals = null;
      }
    };
  }

  /** -errno for an error a tree call threw: FsError → its code, anything else → EIO, logged. */
  private fail(err: unknown, op: string, p?: string): number {
    if (isFsError(err)) return ERRNO[err.code];
    this.eio++;
    this.log.error({ op, path: p, err }, `cowfs: unexpected error in ${op}, answered EIO`);
    return EIO;
  }

  // -------------------------------------------------------------- lifecycle

  _op_init(signal: Signal): void {
    this.counts.init!++;
    if (this._openCallback) {
      process.nextTick(this._openCallback, null);
      this._openCallback = null;
    }
    signal(0);
  }

  /**
   * fuse-native's own _close runs `fusermount -uz` through a shell with the
   * path in double quotes (`$` and backquotes expand) and fails where
   * fusermount is not installed (as root libfuse mounts without it). We run
   * the same lazy unmount without a shell, fall back to `umount -l`, check
   * the mount table, then release fuse-native's native state as its own
   * _close does.
   */
  _close(cb: (err: Error | null) => void): void {
    unmountKernel(this.mnt, this.device).then(() => {
      try {
        if (this._thread) binding.fuse_native_unmount(this.mnt, this._thread);
      } catch {
        // Only unrefs a libuv handle; nothing to undo.
      }
      cb(null);
    }, cb);
  }

  // --------------------------------------------------------------- metadata

  _op_statfs(signal: Signal): void {
    this.counts.statfs!++;
    try {
      const s = this.tree.statfs();
      // fuse-native passes 32-bit fields: grow the fragment size until the counts fit.
      let frsize = s.frsize || s.bsize || 4096;
      let scale = 1;
      while (Math.max(s.blocks, s.bfree, s.bavail) / scale > 0xffffffff) {
        scale *= 2;
        frsize *= 2;
      }
      const a = new Uint32Array(11);
      a[0] = s.bsize;
      a[1] = frsize;
      a[2] = Math.floor(s.blocks / scale);
      a[3] = Math.floor(s.bfree / scale);
      a[4] = Math.floor(s.bavail / scale);
      a[5] = Math.min(s.files, 0xffffffff);
      a[6] = Math.min(s.ffree, 0xffffffff);
      a[7] = Math.min(s.favail, 0xffffffff);
      a[10] = s.namemax;
      signal(0, a);
    } catch (err) {
      signal(this.fail(err, 'statfs'));
    }
  }

  _op_getattr(signal: Signal, p: string): void {
    this.counts.getattr!++;
    const r = rel(p);
    try {
      signal(0, statArray(this.hidden.size > 0 && this.hidden.has(r) ? this.hiddenAttr(r) : this.tree.getattr(r)));
    } catch (err) {
      signal(this.fail(err, 'getattr', r));
    }
  }

  _op_fgetattr(signal: Signal, p: string, fh: number): void {
    this.counts.fgetattr!++;
    const r = rel(p);
    try {
      if (!this.handles.has(fh)) {
        this._op_getattr(signal, p);
        return;
      }
      signal(0, statArray(this.tree.fgetattr(this.handles.get(fh))));
    } catch (err) {
      signal(this.fail(err, 'fgetattr', r));
    }
  }

  _op_readdir(signal: Signal, p: string): void {
    this.counts.readdir!++;
    const r = rel(p);
    try {
      const entries = this.tree.readdir(r);
      const names: string[] = new Array(entries.length + 2);
      const stats: Uint32Array[] = new Array(entries.length + 2);
      names[0] = '.';
      names[1] = '..';
      stats[0] = DOT_STAT;
      stats[1] = DOT_STAT;
      for (let i = 0; i < entries.length; i++) {
        const e = entries[i]!;
        names[i + 2] = e.name;
        stats[i + 2] = DIRENT_STAT.get(e.type & S_IFMT) ?? DIRENT_STAT.get(0)!;
      }
      signal(0, names, stats);
    } catch (err) {
      signal(this.fail(err, 'readdir', r));
    }
  }

  _op_readlink(signal: Signal, p: string): void {
    this.counts.readlink!++;
    const r = rel(p);
    try {
      signal(0, this.tree.readlink(r));
    } catch (err) {
      signal(this.fail(err, 'readlink', r));
    }
  }

  /** Never sent while default_permissions is on (the kernel checks the mode bits itself). */
  _op_access(signal: Signal, p: string, mask: number): void {
    this.counts.access!++;
    const r = rel(p);
    try {
      this.tree.access(r, mask, this.uid, this.gid);
      signal(0);
    } catch (err) {
      signal(this.fail(err, 'access', r));
    }
  }

  _op_chmod(signal: Signal, p: string, mode: number): void {
    this.counts.chmod!++;
    const r = rel(p);
    try {
      this.tree.chmod(r, mode & 0o7777);
      signal(0);
    } catch (err) {
      signal(this.fail(err, 'chmod', r));
    }
  }

  _op_chown(signal: Signal, p: string, uid: number, gid: number): void {
    this.counts.chown!++;
    const r = rel(p);
    try {
      // chown(2) with -1 leaves that id alone; libfuse passes it through as 0xffffffff.
      if (uid === 0xffffffff || gid === 0xffffffff) {
        const cur = this.tree.getattr(r);
        if (uid === 0xffffffff) uid = cur.uid;
        if (gid === 0xffffffff) gid = cur.gid;
      }
      this.tree.chown(r, uid, gid);
      signal(0);
    } catch (err) {
      signal(this.fail(err, 'chown', r));
    }
  }

  /** A time left alone (UTIME_OMIT: tar sets only the mtime, `touch -a` only the atime) arrives as 1073 ms. */
  _op_utimens(signal: Signal, p: string, atimeLow: number, atimeHigh: number): void {
    this.counts.utimens!++;
    const r = rel(p);
    try {
      const atime = atimeLow + atimeHigh * TWO32;
      const mtime = this.utimensMtime(atime);
      // The tree keeps no atime of its own (it answers the mtime): only a new mtime changes anything.
      if (mtime !== UTIME_OMIT_MS) this.tree.utimens(r, atime === UTIME_OMIT_MS ? mtime : atime, mtime);
      signal(0);
    } catch (err) {
      signal(this.fail(err, 'utimens', r));
    }
  }

  /** The request's real mtime, from fuse-native's thread locals (see the file comment). */
  private utimensMtime(atime: number): number {
    const l = this.utimensLocals;
    if (l && l.length >= LOCALS_MTIME + 8 && Number(l.readBigUInt64LE(LOCALS_ATIME)) === atime) {
      this.utimensLayoutOk = true;
      return Number(l.readBigUInt64LE(LOCALS_MTIME));
    }
    if (this.utimensLayoutOk === null) {
      this.utimensLayoutOk = false;
      this.log.warn({ op: 'utimens' }, 'cowfs: cannot read the mtime of utimens from fuse-native; using atime for both');
    }
    return atime;
  }

  // ------------------------------------------------------------------ files

  _op_open(signal: Signal, p: string, flags: number): void {
    this.counts.open!++;
    const r = rel(p);
    try {
      signal(0, this.handles.add(this.tree.open(r, flags), r));
    } catch (err) {
      signal(this.fail(err, 'open', r));
    }
  }

  _op_create(signal: Signal, p: string, mode: number): void {
    this.counts.create!++;
    const r = rel(p);
    try {
      const [uid, gid] = this.ownerFor(r);
      signal(0, this.handles.add(this.tree.create(r, mode & 0o7777, O_CREAT | O_RDWR, uid, gid), r));
    } catch (err) {
      signal(this.fail(err, 'create', r));
    }
  }

  _op_read(signal: Signal, p: string, fh: number, buf: Buffer, len: number, offLow: number, offHigh: number): void {
    this.counts.read!++;
    if (len > this.maxRead) this.maxRead = len;
    try {
      const n = this.tree.read(this.handles.get(fh), buf, len, offLow + offHigh * TWO32);
      signal(n, n, buf.buffer);
    } catch (err) {
      // The native side detaches buf.buffer after the reply: always pass it.
      signal(this.fail(err, 'read', rel(p)), 0, buf.buffer);
    }
  }

  _op_write(signal: Signal, p: string, fh: number, buf: Buffer, len: number, offLow: number, offHigh: number): void {
    this.counts.write!++;
    if (len > this.maxWrite) this.maxWrite = len;
    try {
      const n = this.tree.write(this.handles.get(fh), buf, len, offLow + offHigh * TWO32);
      signal(n, n, buf.buffer);
    } catch (err) {
      signal(this.fail(err, 'write', rel(p)), 0, buf.buffer);
    }
  }

  _op_ftruncate(signal: Signal, p: string, fh: number, sizeLow: number, sizeHigh: number): void {
    this.counts.ftruncate!++;
    const r = rel(p);
    try {
      const size = sizeLow + sizeHigh * TWO32;
      if (this.handles.has(fh)) this.tree.ftruncate(this.handles.get(fh), size);
      else this.truncatePath(r, size);
      signal(0);
    } catch (err) {
      signal(this.fail(err, 'ftruncate', r));
    }
  }

  _op_truncate(signal: Signal, p: string, sizeLow: number, sizeHigh: number): void {
    this.counts.truncate!++;
    const r = rel(p);
    try {
      this.truncatePath(r, sizeLow + sizeHigh * TWO32);
      signal(0);
    } catch (err) {
      signal(this.fail(err, 'truncate', r));
    }
  }

  _op_fsync(signal: Signal, p: string, _datasync: number, fh: number): void {
    this.counts.fsync!++;
    try {
      if (this.handles.has(fh)) this.tree.fsync(this.handles.get(fh));
      signal(0);
    } catch (err) {
      signal(this.fail(err, 'fsync', rel(p)));
    }
  }

  _op_release(signal: Signal, p: string, fh: number): void {
    this.counts.release!++;
    try {
      if (!this.handles.has(fh)) {
        signal(EBADF);
        return;
      }
      const t = this.handles.get(fh);
      this.handles.remove(fh);
      this.tree.release(t);
      signal(0);
    } catch (err) {
      signal(this.fail(err, 'release', rel(p)));
    }
  }

  // ------------------------------------------------------------- namespace

  _op_unlink(signal: Signal, p: string): void {
    this.counts.unlink!++;
    const r = rel(p);
    try {
      // libfuse removes the hidden name of an unlinked open file at its last release: already gone from the tree.
      if (this.hidden.size > 0 && this.hidden.delete(r)) signal(0);
      else {
        this.tree.unlink(r);
        signal(0);
      }
    } catch (err) {
      signal(this.fail(err, 'unlink', r));
    }
  }

  _op_mkdir(signal: Signal, p: string, mode: number): void {
    this.counts.mkdir!++;
    const r = rel(p);
    try {
      const [uid, gid] = this.ownerFor(r);
      this.tree.mkdir(r, mode & 0o7777, uid, gid);
      signal(0);
    } catch (err) {
      signal(this.fail(err, 'mkdir', r));
    }
  }

  _op_rmdir(signal: Signal, p: string): void {
    this.counts.rmdir!++;
    const r = rel(p);
    try {
      this.tree.rmdir(r);
      signal(0);
    } catch (err) {
      signal(this.fail(err, 'rmdir', r));
    }
  }

  _op_rename(signal: Signal, src: string, dest: string): void {
    this.counts.rename!++;
    const from = rel(src);
    const to = rel(dest);
    try {
      if (HIDDEN_NAME.test(baseOf(to)) && parentOf(to) === parentOf(from) && !this.hidden.has(to)) {
        const open = this.handles.openOn(from);
        if (open.length > 0) {
          // libfuse hiding an open file it was asked to unlink (or to rename over): it is an unlink.
          this.tree.unlink(from);
          this.handles.renamed(from, to);
          this.hidden.set(to, from);
          signal(0);
          return;
        }
      }
      this.tree.rename(from, to, 0);
      this.handles.renamed(from, to);
      signal(0);
    } catch (err) {
      signal(this.fail(err, 'rename', `${from} -> ${to}`));
    }
  }

  /** symlink(2)'s target is any string, never a path of this mount: passed through as is. */
  _op_symlink(signal: Signal, target: string, linkPath: string): void {
    this.counts.symlink!++;
    const r = rel(linkPath);
    try {
      const [uid, gid] = this.ownerFor(r);
      this.tree.symlink(target, r, uid, gid);
      signal(0);
    } catch (err) {
      signal(this.fail(err, 'symlink', r));
    }
  }

  // ---------------------------------------------------------------- helpers

  /** fuse-native cannot tell who is calling: new entries belong to the owner of their directory. */
  private ownerFor(r: string): [number, number] {
    try {
      const d = this.tree.getattr(parentOf(r));
      return [d.uid, d.gid];
    } catch {
      return [this.uid, this.gid];
    }
  }

  private hiddenAttr(r: string): Attr {
    const fh = this.handles.openOn(r)[0];
    if (fh === undefined) throw new FsError('ENOENT');
    return this.tree.fgetattr(this.handles.get(fh));
  }

  private truncatePath(r: string, size: number): void {
    if (this.hidden.size > 0 && this.hidden.has(r)) {
      const fh = this.handles.openOn(r)[0];
      if (fh === undefined) throw new FsError('ENOENT');
      this.tree.ftruncate(this.handles.get(fh), size);
    } else {
      this.tree.truncate(r, size);
    }
  }

  stats(): AdapterStats {
    return { ops: { ...this.counts }, maxWrite: this.maxWrite, maxRead: this.maxRead, eio: this.eio, openHandles: this.handles.count };
  }
}

// ------------------------------------------------------------------- options

/**
 * Every libfuse option we want, as one `-o` string. fuse-native forwards only
 * a fixed list of options and drops zero values (`entryTimeout: 0` does
 * nothing), but puts `fsname` verbatim into the comma-separated -o string,
 * so we hand it all of ours as the fsname's tail (FUSE-NOTES).
 */
export function fuseOptions(opts: MountOptions): string[] {
  const entry = opts.entryTimeout ?? 1;
  const o = [
    `fsname=${escapeOption(opts.fsname ?? 'cowfs')}`,
    'subtype=cowfs',
    // The kernel checks permissions from our mode/uid/gid itself (no ACCESS round trips).
    'default_permissions',
    // Our inode numbers reach stat(2): stable across remounts, which git's index relies on.
    'use_ino',
    `entry_timeout=${entry}`,
    `negative_timeout=${opts.negativeTimeout ?? entry}`,
    `attr_timeout=${opts.attrTimeout ?? 1}`,
    // 128 KiB writes and reads instead of 4 KiB ones (dd: 35 → ~510 MB/s, FUSE-NOTES).
    'big_writes',
    'max_write=131072',
    'max_read=131072',
    // O_TRUNC reaches open() instead of a separate truncate request: one round trip less per `>`,
    // and the tree can skip copying up a file it is about to empty.
    'atomic_o_trunc',
  ];
  o.push(opts.kernelCache ? 'kernel_cache' : 'auto_cache');
  if (opts.allowOther) o.push('allow_other');
  if (opts.debug) o.push('debug');
  return o;
}

/** fuse-native copies the -o string into a 1024-byte buffer and silently truncates the rest. */
const MAX_OPTIONS_BYTES = 1023;

// --------------------------------------------------------------------- mount

/**
 * Mounts `tree` at `mountpoint` with fuse-native and resolves once the
 * kernel's INIT arrived (the mount answers from then on). The process that
 * calls this serves the mount and must never touch it itself (FUSE-NOTES).
 * If anything fails after the kernel mount was made, the mount is removed
 * before the error is thrown.
 */
export async function mountTree(mountpoint: string, tree: TreeOps, opts: MountOptions = {}): Promise<MountHandle> {
  const mp = path.resolve(mountpoint);
  const options = fuseOptions(opts);
  const [fsname, ...rest] = options;
  const fsnameValue = [fsname!.slice('fsname='.length), ...rest].join(',');
  const optionString = `-ofsname=${fsnameValue}`;
  if (Buffer.byteLength(optionString) > MAX_OPTIONS_BYTES) {
    throw new Error(`mount options for ${mp} exceed fuse-native's ${MAX_OPTIONS_BYTES} bytes; use a shorter fsname`);
  }
  const log = opts.logger ?? defaultLogger;
  const before = new Set(fuseMountsAt(mp).map((m) => m.device));
  const fuse = new CowFuse(mp, { fsname: fsnameValue, timeout: false }, tree, log);

  const newMount = () => fuseMountsAt(mp).filter((m) => !before.has(m.device)).pop();
  try {
    await new Promise<void>((resolve, reject) => {
      const timeoutMs = opts.initTimeoutMs ?? 15_000;
      const timer = setTimeout(() => reject(new Error(`no FUSE INIT from the kernel within ${timeoutMs} ms`)), timeoutMs);
      fuse.mount((err) => {
        clearTimeout(timer);
        if (err) reject(err);
        else resolve();
      });
    });
  } catch (err) {
    // libfuse may have made the kernel mount before failing (fuse_new rejects an option after fuse_mount succeeded).
    if (newMount()) await lazyUnmount(mp);
    const msg = (err as Error).message;
    throw new Error(`cannot mount ${mp}: ${msg === 'fuse failed' ? 'libfuse refused (see its message on stderr: mountpoint not empty, bad option, no /dev/fuse…)' : msg}`);
  }
  const m = newMount();
  fuse.device = m?.device ?? '';

  let unmounting: Promise<void> | null = null;
  return {
    mountpoint: mp,
    options: optionString,
    device: fuse.device,
    writeback: false,
    stats: () => fuse.stats(),
    notified: () => Promise.resolve(), // it cannot tell the kernel anything: its caches time out
    unmount(): Promise<void> {
      unmounting ??= new Promise<void>((resolve, reject) => {
        fuse.unmount((err) => (err ? reject(err) : resolve()));
      }).catch(async (err: Error) => {
        // Whatever failed, the mount must not stay: one more lazy unmount, then report.
        await unmountKernel(mp, fuse.device).catch(() => undefined);
        if (fuseMountsAt(mp).some((x) => x.device === fuse.device)) throw err;
      });
      return unmounting;
    },
  };
}

