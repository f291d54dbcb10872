import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import type FuseType from 'fuse-native';
import { FsError, O_CREAT, O_WRONLY, type Attr, type TreeOps } from '../overlay/contract.js';
import { negErrno } from './errno.js';

const require = createRequire(import.meta.url);
// Loaded only when this adapter is chosen, so a machine without libfuse.so.2 can use another one.
const Fuse = require('fuse-native') as typeof FuseType;
// The same native module instance fuse-native loaded (node-gyp-build resolves to one cached .node file).
const binding = require('node-gyp-build')(path.dirname(require.resolve('fuse-native/package.json'))) as {
  fuse_native_unmount(mnt: string, thread: Buffer | null): void;
};

export interface MountOptions {
  /** The mount's source in /proc/mounts (cowfs:AGENT@STATEDIR). */
  fsname: string;
  allowOther: boolean;
  /**
   * Seconds the kernel may trust a lookup or attributes. Not an hour: a
   * cascade rebase or a workspace edit changes a tree under the kernel, and
   * libfuse 2's high-level API cannot tell the kernel to forget.
   */
  cacheSeconds?: number;
}

export interface MountHandle {
  mountpoint: string;
  unmount(): Promise<void>;
}

type Cb = (...args: any[]) => void;

/** stat(2) as fuse-native wants it (times as Dates). */
function toStat(a: Attr) {
  return {
    mode: a.mode, uid: a.uid, gid: a.gid, size: a.size, nlink: a.nlink, ino: a.ino >>> 0,
    blksize: 4096, blocks: Math.ceil(a.size / 512),
    atime: new Date(a.atimeMs), mtime: new Date(a.mtimeMs), ctime: new Date(a.ctimeMs),
  };
}

function errnoOf(err: unknown, log: (err: unknown) => void): number {
  if (err instanceof FsError) return negErrno(err.code);
  log(err);
  return negErrno('EIO');
}

/** Runs a TreeOps call and answers FUSE with (0, result) or -errno. */
function answer(cb: Cb, fn: () => unknown, log: (err: unknown) => void): void {
  let result: unknown;
  try {
    result = fn();
  } catch (err) {
    return cb(errnoOf(err, log));
  }
  cb(0, result);
}

/** read/write answer with a byte count, or -errno. */
function count(cb: Cb, fn: () => number, log: (err: unknown) => void): void {
  let n: number;
  try {
    n = fn();
  } catch (err) {
    return cb(errnoOf(err, log));
  }
  cb(n);
}

/**
 * fuse-native, fixed where it falls short of what the overlay needs:
 * - fgetattr is routed to getattr(path) upstream, so fstat of a file renamed
 *   or deleted while open would fail; here it reaches TreeOps.fgetattr(fh).
 * - unmount shells out to fusermount (not installed with libfuse2 alone);
 *   as root, umount(8) does it, lazily when the mount is busy.
 */
class CowFuse extends Fuse {
  fgetattrFh: number | undefined;

  _op_fgetattr(signal: Cb, path: string, fh: number): void {
    // Upstream's getattr path packs the stat; it runs synchronously, so the handle can ride along.
    this.fgetattrFh = fh;
    try {
      this._op_getattr(signal, path);
    } finally {
      this.fgetattrFh = undefined;
    }
  }

  _close(cb: (err: Error | null) => void): void {
    execFile('umount', [this.mnt], (err) => {
      if (!err) return this.stopThread(cb);
      execFile('umount', ['-l', this.mnt], (err2) => (err2 ? cb(err2) : this.stopThread(cb)));
    });
  }

  private stopThread(cb: (err: Error | null) => void): void {
    try {
      binding.fuse_native_unmount(this.mnt, this._thread);
    } catch (err) {
      return cb(err as Error);
    }
    cb(null);
  }
}

/** Mounts one agent's tree with fuse-native (libfuse 2, high-level API). */
export async function mountTree(mountpoint: string, tree: TreeOps, opts: MountOptions): Promise<MountHandle> {
  const log = (err: unknown) => process.emitWarning(`cowfs FUSE handler failed: ${(err as Error)?.stack ?? err}`);
  const p = (path: string) => (path === '/' ? '' : path.slice(1));
  let fuse: CowFuse;
  const ops: Record<string, Cb> = {
    init: (cb) => cb(0),
    statfs: (_path, cb) => answer(cb, () => tree.statfs(), log),
    getattr: (path, cb) => answer(cb, () => toStat(fuse.fgetattrFh !== undefined ? tree.fgetattr(fuse.fgetattrFh) : tree.getattr(p(path))), log),
    // Present so fuse-native registers fgetattr; CowFuse._op_fgetattr does the work.
    fgetattr: (path, _fh, cb) => answer(cb, () => toStat(tree.getattr(p(path))), log),
    access: (path, mode, cb) => answer(cb, () => tree.access(p(path), mode, 0, 0), log),
    readdir: (path, cb) => answer(cb, () => ['.', '..', ...tree.readdir(p(path)).map((d) => d.name)], log),
    readlink: (path, cb) => answer(cb, () => tree.readlink(p(path)), log),
    open: (path, flags, cb) => answer(cb, () => tree.open(p(path), flags), log),
    // fuse-native drops create's flags; a new file starts empty anyway.
    create: (path, mode, cb) => answer(cb, () => tree.create(p(path), mode, O_WRONLY | O_CREAT, 0, 0), log),
    read: (_path, fh, buf, len, pos, cb) => count(cb, () => tree.read(fh, buf, len, pos), log),
    write: (_path, fh, buf, len, pos, cb) => count(cb, () => tree.write(fh, buf, len, pos), log),
    truncate: (path, size, cb) => answer(cb, () => tree.truncate(p(path), size), log),
    ftruncate: (_path, fh, size, cb) => answer(cb, () => tree.ftruncate(fh, size), log),
    fsync: (_path, _datasync, fh, cb) => answer(cb, () => tree.fsync(fh), log),
    release: (_path, fh, cb) => answer(cb, () => tree.release(fh), log),
    unlink: (path, cb) => answer(cb, () => tree.unlink(p(path)), log),
    mkdir: (path, mode, cb) => answer(cb, () => tree.mkdir(p(path), mode, 0, 0), log),
    rmdir: (path, cb) => answer(cb, () => tree.rmdir(p(path)), log),
    rename: (from, to, cb) => answer(cb, () => tree.rename(p(from), p(to), 0), log),
    symlink: (target, path, cb) => answer(cb, () => tree.symlink(target, p(path), 0, 0), log),
    chmod: (path, mode, cb) => answer(cb, () => tree.chmod(p(path), mode), log),
    chown: (path, uid, gid, cb) => answer(cb, () => tree.chown(p(path), uid, gid), log),
    utimens: (path, atime, mtime, cb) => answer(cb, () => tree.utimens(p(path), Number(atime), Number(mtime)), log),
    // No xattrs: answering ENOSYS once stops the kernel asking (security.capability on every write).
    getxattr: (_path, _name, _pos, cb) => cb(negErrno('ENOSYS')),
    listxattr: (_path, cb) => cb(negErrno('ENOSYS')),
    setxattr: (_path, _name, _value, _pos, _flags, cb) => cb(negErrno('ENOSYS')),
    removexattr: (_path, _name, cb) => cb(negErrno('ENOSYS')),
  };
  const seconds = opts.cacheSeconds ?? 1;
  // fuse-native forwards only some -o options; the rest ride on fsname (FUSE-NOTES).
  const extra = ['use_ino', 'big_writes', 'max_write=131072', `negative_timeout=${seconds}`, 'auto_cache', 'default_permissions'];
  fuse = new CowFuse(mountpoint, ops, {
    fsname: [opts.fsname, ...extra].join(','),
    allowOther: opts.allowOther,
    entryTimeout: seconds,
    attrTimeout: seconds,
    maxRead: 131072,
    timeout: false,
  });
  await new Promise<void>((resolve, reject) => fuse.mount((err) => (err ? reject(err) : resolve())));
  return {
    mountpoint,
    unmount: () => new Promise<void>((resolve, reject) => fuse.unmount((err) => (err ? reject(err) : resolve()))),
  };
}
