/**
 * The libfuse 3 adapter: kernel requests, as native/ (libfuse 3.14's
 * low-level API) delivers them by node id, turned into calls of the
 * overlay's path-based contract (`TreeOps`, src/overlay/contract.ts).
 *
 * - Node ids ↔ paths live in a NodeTable: lookups count up, FORGET counts
 *   down, renames move subtrees, unlinks detach (open files keep working by
 *   handle). No descriptor is held per node.
 * - The kernel caches names, attributes, pages and directory listings for a
 *   long time (`cacheTimeout`), because whatever changes the tree without a
 *   request through this mount (a rebase, a resolve, an undo) is reported
 *   through `watchChanges` and invalidated explicitly (native/ queues the
 *   notifications to a thread of its own).
 * - OPENDIR is answered ENOSYS in C: directories are read from their node
 *   id, and the kernel keeps caching their listings. READDIRPLUS hands the
 *   kernel each new entry's node and attributes with the listing.
 * - GETATTR of a file is answered in C from the attributes we last gave
 *   (remember), dropped before anything that may change them is answered.
 * - A read-only OPEN (and its RELEASE) is answered in C with handle 0 and
 *   the page cache kept; we only count its readers, and read by node id
 *   through a read handle of our own (readHandle). Opens for writing come
 *   here: the tree's open files (scratch copy-up, a put event at release)
 *   need handles.
 * - FLUSH, xattrs, link, mknod and access are left unimplemented, so
 *   libfuse answers ENOSYS in C and the kernel stops sending them
 *   (default_permissions: the kernel checks modes itself).
 * - Atomic O_TRUNC and flock are off: O_TRUNC reaches us as a SETATTR of
 *   the size before OPEN, flock stays in the kernel.
 * - New files, directories and symlinks belong to the caller
 *   (fuse_req_ctx), as on any filesystem.
 */
import path from 'node:path';
import {
  FsError, O_ACCMODE, O_APPEND, S_IFDIR, S_IFMT, S_IFREG,
  type Attr, type DirEntryInfo, type TreeOps,
} from '../overlay/contract.js';
import {
  defaultLogger, ERRNO, escapeOption, isFsError, unmountKernel,
  type AdapterLogger, type AdapterStats, type MountHandle, type MountOptions,
} from './adapter-common.js';
import { Feature, loadBinding, Op, OpenReply, type Binding, type Native } from './libfuse3-binding.js';
import { fuseMountsAt, lazyUnmount } from './mount-table.js';
import { NodeTable, type FuseNode } from './node-table.js';
import { join } from '../overlay/paths.js';

export interface Libfuse3Options extends MountOptions {
  /** Seconds the kernel may trust names, attributes and "no such name" answers (default a day: changes are invalidated). */
  cacheTimeout?: number;
  /** The kernel's writeback cache: write() returns once in the page cache; pages reach us in large writes. */
  writeback?: boolean;
  /** READDIRPLUS: listings bring each entry's node and attributes (default on). */
  readdirplus?: boolean;
  /** Largest write the kernel may send (default 1 MiB, libfuse 3.14's limit). */
  maxWrite?: number;
}

const ENOSYS = -ERRNO.ENOSYS;
const EIO = -ERRNO.EIO;
/** FUSE_SET_ATTR_* bits of setattr's to_set. */
const SET = { MODE: 1, UID: 2, GID: 4, SIZE: 8, ATIME: 16, MTIME: 32, ATIME_NOW: 128, MTIME_NOW: 256 } as const;
/** A read handle the adapter opened itself (for opens answered in C) is released after this long unused… */
const LAZY_IDLE_MS = 1000;
/** …or when this many are open (each may hold a descriptor; the limit is 20,000). */
const LAZY_MAX = 4096;
/** Directory listings kept between the READDIR calls that page through one (by node id). */
const LISTINGS_KEPT = 64;
const DAY = 86_400;

/** Bytes of one READDIRPLUS entry in the reply: struct fuse_direntplus up to the name (152), the name, 8-aligned. */
function direntPlusBytes(name: string): number {
  return (152 + Buffer.byteLength(name) + 7) & ~7;
}

interface Listing {
  names: string[];
  types: number[];
}

const OP_NAMES = Object.fromEntries(Object.entries(Op).map(([k, v]) => [v, k.toLowerCase()])) as Record<number, string>;

let binding: Binding | undefined;

/** Loads the addon (throws if it is not built or libfuse3 is missing). */
export function libfuse3Binding(): Binding {
  binding ??= loadBinding();
  return binding;
}

interface OpenHandle {
  treeFh: number;
  node: number;
  writable: boolean;
}

/** A read handle the adapter opened for a node, for readers whose open native/ answered itself. */
interface LazyHandle {
  fh: number;
  used: number;
  /** Keeps a file unlinked while readers hold it readable until the last of them is gone. */
  pinned: boolean;
}

class Libfuse3Session {
  readonly nodes = new NodeTable();
  private readonly handles = new Map<number, OpenHandle>();
  private nextFh = 1;
  private readonly listings = new Map<number, Listing>();
  private readBuf = Buffer.alloc(0);
  /** True while a request of this mount is being answered: tree events then come from our own kernel. */
  inRequest = false;
  readonly counts: Record<string, number> = Object.create(null);
  maxWrite = 0;
  maxRead = 0;
  eio = 0;
  writeback = false;
  session: Native | undefined;
  onInit: ((err: Error | null) => void) | null = null;
  onExit: (() => void) | null = null;
  exited = false;

  /** Node id → its read handle (for opens answered in C). */
  private readonly lazy = new Map<number, LazyHandle>();
  /** Node id → how many read-only opens answered in C are not released yet. */
  private readonly readers = new Map<number, number>();
  private sweeper: NodeJS.Timeout | undefined;

  constructor(private readonly b: Binding, private readonly tree: TreeOps, private readonly log: AdapterLogger,
    private readonly ttl: number) {}

  dispatch = (op: number, req: Native | undefined, ino: number, name1: string | undefined, name2: string | undefined,
    data: Buffer | undefined, n0: number, n1: number, n2: number, n3: number, n4: number, n5: number, n6: number, n7: number): void => {
    const name = OP_NAMES[op] ?? String(op);
    this.counts[name] = (this.counts[name] ?? 0) + 1;
    this.inRequest = true;
    try {
      switch (op) {
        case Op.INIT: return this.init(n2 === 1);
        case Op.EXIT: return this.exit();
        case Op.FORGET: return this.forget(ino, n0);
        case Op.LOOKUP: return this.lookup(req!, ino, name1!);
        case Op.GETATTR: return this.getattr(req!, ino, n0);
        case Op.SETATTR: return this.setattr(req!, ino, n0, n1, n2, n3, n4, n5, n6, n7);
        case Op.READLINK: return this.b.replyReadlink(req!, this.tree.readlink(this.nodes.pathOf(ino)));
        case Op.MKDIR: return this.mkdir(req!, ino, name1!, n0, n1, n2);
        case Op.UNLINK: return this.remove(req!, ino, name1!, false);
        case Op.RMDIR: return this.remove(req!, ino, name1!, true);
        case Op.SYMLINK: return this.symlink(req!, ino, name1!, name2!, n1, n2);
        case Op.RENAME: return this.rename(req!, ino, name1!, n0, name2!, n1);
        case Op.OPEN: return req ? this.open(req, ino, n0) : this.readerOpened(ino);
        case Op.READ: return this.read(req!, ino, n0, n1, n2);
        case Op.WRITE: return this.write(req!, n0, data!, n2);
        case Op.RELEASE: return req ? this.release(req, n0) : this.readerClosed(ino);
        case Op.FSYNC: return this.fsync(req!, n0);
        case Op.READDIR: return this.readdir(req!, ino, n1, n2);
        case Op.READDIRPLUS: return this.readdirplus(req!, ino, n1, n2);
        case Op.STATFS: return this.statfs(req!);
        case Op.CREATE: return this.create(req!, ino, name1!, n0, n1, n2, n4);
        default:
          if (req) this.b.replyErr(req, ENOSYS);
      }
    } catch (err) {
      if (req) this.b.replyErr(req, this.errno(err, name, ino, name1));
    } finally {
      this.inRequest = false;
    }
  };

  private errno(err: unknown, op: string, ino: number, name?: string): number {
    if (isFsError(err)) return -ERRNO[err.code];
    this.eio++;
    this.log.error({ op, ino, name, err }, `cowfs: unexpected error in ${op}, answered EIO`);
    return EIO;
  }

  // -------------------------------------------------------------- lifecycle

  private init(writeback: boolean): void {
    this.writeback = writeback;
    this.onInit?.(null);
    this.onInit = null;
  }

  private exit(): void {
    this.exited = true;
    if (this.session) this.b.close(this.session);
    this.onInit?.(new Error('the session ended before the kernel sent INIT'));
    this.onInit = null;
    this.onExit?.();
  }

  // --------------------------------------------------------------- replies

  private attrArgs(a: Attr): [number, number, number, number, number, number, number, number, number] {
    return [a.ino, a.mode, a.nlink, a.uid, a.gid, a.size, a.atimeMs, a.mtimeMs, a.ctimeMs];
  }

  private replyEntry(req: Native, p: string, a: Attr): void {
    const n = this.nodes.lookup(p, (a.mode & S_IFMT) === S_IFDIR);
    this.remember(n, a);
    this.b.replyEntry(req, n.id, ...this.attrArgs(a), this.ttl, this.ttl);
  }

  /** Attributes of a node: by handle when one is given (or the node was unlinked while open), else by path. */
  private attrOf(ino: number, fh: number): Attr {
    const h = fh ? this.handles.get(fh) : undefined;
    if (h) return this.tree.fgetattr(h.treeFh);
    const n = this.nodes.node(ino);
    return n.path !== null ? this.tree.getattr(n.path) : this.tree.fgetattr(this.handleOf(n).treeFh);
  }

  // -------------------------------------------------------------- metadata

  private lookup(req: Native, parent: number, name: string): void {
    const p = join(this.nodes.pathOf(parent), name);
    let a: Attr;
    try {
      a = this.tree.getattr(p);
    } catch (err) {
      if (isFsError(err) && err.code === 'ENOENT') {
        // A cached "no such name": invalidated like any entry when the path appears under the kernel.
        this.b.replyEntry(req, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, this.ttl);
        return;
      }
      throw err;
    }
    this.replyEntry(req, p, a);
  }

  private getattr(req: Native, ino: number, fh: number): void {
    const a = this.attrOf(ino, fh);
    this.remember(this.nodes.node(ino), a);
    this.b.replyAttr(req, ...this.attrArgs(a), this.ttl);
  }

  /**
   * The next GETATTRs of a file are answered in C with `a` (once a file was
   * read to its end the kernel asks again at its next fstat), until dropAttr:
   * whatever may change them drops it first. Not for directories (every name in them changes
   * them), nor files open for writing here, unlinked, or symlinks.
   */
  private remember(n: FuseNode, a: Attr): void {
    if (this.session && (a.mode & S_IFMT) === S_IFREG && n.path !== null && !this.openForWriting(n)) {
      this.b.cacheAttr(this.session, n.id, ...this.attrArgs(a), this.ttl);
    }
  }

  private dropAttr(id: number): void {
    if (this.session) this.b.dropAttr(this.session, id);
  }

  private setattr(req: Native, ino: number, fh: number, toSet: number, mode: number, uid: number, gid: number,
    size: number, atimeMs: number, mtimeMs: number): void {
    const h = fh ? this.handles.get(fh) : undefined;
    const n = this.nodes.node(ino);
    const p = n.path;
    this.dropAttr(ino);
    if (toSet & SET.SIZE) {
      if (h) this.tree.ftruncate(h.treeFh, size);
      else if (p !== null) this.tree.truncate(p, size);
      else this.tree.ftruncate(this.handleOf(n).treeFh, size);
    }
    // A file unlinked while open has no path left to change: the writeback cache still flushes its
    // times at close (by handle), which nobody can observe but through the handle; let it pass.
    if (p === null && !h && !n.open.size) throw new FsError('ENOENT');
    if (p !== null && toSet & (SET.MODE | SET.UID | SET.GID | SET.ATIME | SET.MTIME | SET.ATIME_NOW | SET.MTIME_NOW)) {
      if (toSet & SET.MODE) this.tree.chmod(p, mode & 0o7777);
      if (toSet & (SET.UID | SET.GID)) {
        const cur = this.tree.getattr(p);
        this.tree.chown(p, toSet & SET.UID ? uid : cur.uid, toSet & SET.GID ? gid : cur.gid);
      }
      if (toSet & (SET.ATIME | SET.MTIME | SET.ATIME_NOW | SET.MTIME_NOW)) {
        const cur = this.tree.getattr(p);
        const now = Date.now();
        const a = toSet & SET.ATIME_NOW ? now : toSet & SET.ATIME ? atimeMs : cur.atimeMs;
        const m = toSet & SET.MTIME_NOW ? now : toSet & SET.MTIME ? mtimeMs : cur.mtimeMs;
        this.tree.utimens(p, a, m);
      }
    }
    this.b.replyAttr(req, ...this.attrArgs(this.attrOf(ino, fh)), this.ttl);
  }

  /** A handle open on a node: how a file unlinked while open is still reached. */
  private handleOf(n: FuseNode): OpenHandle {
    const open = n.open.values().next();
    if (open.done) throw new FsError('ENOENT');
    return this.handles.get(open.value)!;
  }

  /** A directory's listing ('.' and '..' first), kept while the kernel pages through it (offset > 0). */
  private listing(ino: number, offset: number): Listing {
    let l = offset === 0 ? undefined : this.listings.get(ino);
    if (!l) {
      const entries: DirEntryInfo[] = this.tree.readdir(this.nodes.pathOf(ino));
      l = { names: ['.', '..'], types: [S_IFDIR, S_IFDIR] };
      for (const e of entries) {
        l.names.push(e.name);
        l.types.push(e.type & S_IFMT);
      }
      this.listings.delete(ino);
      if (this.listings.size >= LISTINGS_KEPT) this.listings.delete(this.listings.keys().next().value!);
      this.listings.set(ino, l);
    }
    return l;
  }

  private readdir(req: Native, ino: number, size: number, offset: number): void {
    const l = this.listing(ino, offset);
    this.b.replyDir(req, l.names, l.types, size, offset);
  }

  /**
   * READDIRPLUS: the entries that fit in `size`, each with its node and
   * attributes, so the kernel needs no LOOKUP of them afterwards. Every entry
   * sent with a node id (all but '.', '..', names the kernel knows already and
   * names gone meanwhile) is a lookup the kernel holds, counted like a LOOKUP's.
   */
  private readdirplus(req: Native, ino: number, size: number, offset: number): void {
    const l = this.listing(ino, offset);
    const dir = this.nodes.pathOf(ino);
    const names: string[] = [];
    const found: (Attr | undefined)[] = [];
    let used = 0;
    for (let i = offset; i < l.names.length; i++) {
      const name = l.names[i]!;
      used += direntPlusBytes(name);
      if (used > size) break;
      names.push(name);
      const p = join(dir, name);
      // A name the kernel knows already is only listed: its LOOKUP's attributes stand until invalidated.
      found.push(i < 2 || this.nodes.at(p) ? undefined : this.entryAttr(p));
    }
    // Nodes only once nothing can throw any more: each one counts a lookup.
    const ids = names.map((name, k) => {
      const a = found[k];
      return a ? this.nodes.lookup(join(dir, name), (a.mode & S_IFMT) === S_IFDIR).id : 0;
    });
    const attrs = new Float64Array(names.length * 9);
    found.forEach((a, k) => {
      if (a) attrs.set(this.attrArgs(a), k * 9);
      else attrs[k * 9 + 1] = l.types[offset + k]!;
    });
    const sent = this.b.replyDirPlus(req, names, ids, attrs, size, offset, this.ttl);
    // Entries libfuse could not fit (none while direntPlusBytes matches it) hold no lookup.
    for (let k = sent; k < ids.length; k++) if (ids[k]) this.nodes.forget(ids[k]!, 1);
  }

  /** An entry's attributes for READDIRPLUS; none if it cannot be read now (its LOOKUP will say why). */
  private entryAttr(p: string): Attr | undefined {
    try {
      return this.tree.getattr(p);
    } catch (err) {
      if (isFsError(err)) return undefined;
      throw err;
    }
  }

  private statfs(req: Native): void {
    const s = this.tree.statfs();
    this.b.replyStatfs(req, s.bsize, s.frsize, s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.favail, s.namemax);
  }

  // ------------------------------------------------------------- namespace

  private mkdir(req: Native, parent: number, name: string, mode: number, uid: number, gid: number): void {
    const p = join(this.nodes.pathOf(parent), name);
    this.tree.mkdir(p, mode & 0o7777, uid, gid);
    this.replyEntry(req, p, this.tree.getattr(p));
  }

  private symlink(req: Native, parent: number, name: string, target: string, uid: number, gid: number): void {
    const p = join(this.nodes.pathOf(parent), name);
    this.tree.symlink(target, p, uid, gid);
    this.replyEntry(req, p, this.tree.getattr(p));
  }

  private remove(req: Native, parent: number, name: string, dir: boolean): void {
    const p = join(this.nodes.pathOf(parent), name);
    this.dropAttrAt(p);
    if (dir) this.tree.rmdir(p);
    else {
      this.pin(p);
      this.tree.unlink(p);
    }
    this.nodes.removed(p);
    this.b.replyErr(req, 0);
  }

  private rename(req: Native, parent: number, name: string, newParent: number, newName: string, flags: number): void {
    const from = join(this.nodes.pathOf(parent), name);
    const to = join(this.nodes.pathOf(newParent), newName);
    this.pin(to);
    this.dropAttrAt(from);
    this.dropAttrAt(to);
    this.tree.rename(from, to, flags);
    this.nodes.renamed(from, to);
    this.b.replyErr(req, 0);
  }

  /** Unlink and rename change a file's links and ctime. */
  private dropAttrAt(p: string): void {
    const n = this.nodes.at(p);
    if (n) this.dropAttr(n.id);
  }

  // ------------------------------------------------------------------ files

  private openForWriting(n: FuseNode): boolean {
    for (const fh of n.open) if (this.handles.get(fh)?.writable) return true;
    return false;
  }

  private addHandle(treeFh: number, node: FuseNode, flags: number): number {
    const fh = this.nextFh++;
    this.handles.set(fh, { treeFh, node: node.id, writable: (flags & O_ACCMODE) !== 0 });
    node.open.add(fh);
    return fh;
  }

  private handle(fh: number): OpenHandle {
    const h = this.handles.get(fh);
    if (!h) throw new FsError('EBADF', `unknown file handle ${fh}`);
    return h;
  }

  /**
   * With the writeback cache the kernel appends itself and writes whole pages at their offsets:
   * an O_APPEND handle in the tree would append those pages again at the end.
   */
  private treeFlags(flags: number): number {
    return this.writeback ? flags & ~O_APPEND : flags;
  }

  private open(req: Native, ino: number, flags: number): void {
    const n = this.nodes.node(ino);
    this.dropAttr(ino);
    const fh = this.addHandle(this.tree.open(this.nodes.pathOf(ino), this.treeFlags(flags)), n, flags);
    this.b.replyOpen(req, fh, OpenReply.KEEP_CACHE);
  }

  private create(req: Native, parent: number, name: string, mode: number, uid: number, gid: number, flags: number): void {
    const p = join(this.nodes.pathOf(parent), name);
    const treeFh = this.tree.create(p, mode & 0o7777, this.treeFlags(flags), uid, gid);
    const a = this.tree.fgetattr(treeFh);
    const n = this.nodes.lookup(p, false);
    const fh = this.addHandle(treeFh, n, flags);
    this.b.replyCreate(req, n.id, ...this.attrArgs(a), this.ttl, this.ttl, fh, OpenReply.KEEP_CACHE);
  }

  private read(req: Native, ino: number, fh: number, size: number, offset: number): void {
    if (size > this.maxRead) this.maxRead = size;
    this.dropAttr(ino); // reading may move the file's atime
    if (this.readBuf.length < size) this.readBuf = Buffer.allocUnsafe(Math.max(size, 131072));
    // The reply is written to the kernel before replyBuf returns: one buffer serves every read.
    const n = this.tree.read((fh ? this.handle(fh) : this.readHandle(ino)).treeFh, this.readBuf, size, offset);
    this.b.replyBuf(req, this.readBuf, n);
  }

  private write(req: Native, fh: number, data: Buffer, offset: number): void {
    if (data.length > this.maxWrite) this.maxWrite = data.length;
    this.b.replyWrite(req, this.tree.write(this.handle(fh).treeFh, data, data.length, offset));
  }

  private fsync(req: Native, fh: number): void {
    const h = fh ? this.handles.get(fh) : undefined;
    if (h) this.tree.fsync(h.treeFh);
    this.b.replyErr(req, 0);
  }

  private release(req: Native, fh: number): void {
    this.releaseHandle(fh);
    this.b.replyErr(req, 0);
  }

  private releaseHandle(fh: number): void {
    const h = this.handles.get(fh);
    if (!h) return;
    this.handles.delete(fh);
    this.nodes.closed(h.node, fh);
    this.tree.release(h.treeFh);
  }

  // ------------------------------------------- read-only opens answered in C

  /**
   * The tree handle that serves reads with handle 0 (opens native/ answered
   * itself): one per node, opened at the first read that misses the page
   * cache, released after LAZY_IDLE_MS unused, at FORGET, or at unmount.
   */
  private readHandle(ino: number): OpenHandle {
    const l = this.lazy.get(ino);
    if (l) {
      l.used = Date.now();
      return this.handles.get(l.fh)!;
    }
    const n = this.nodes.node(ino);
    const fh = this.addHandle(this.tree.open(this.nodes.pathOf(ino), 0), n, 0);
    this.lazy.set(ino, { fh, used: Date.now(), pinned: false });
    if (this.lazy.size > LAZY_MAX) this.releaseOldest();
    this.sweeper ??= setInterval(() => this.sweep(), LAZY_IDLE_MS).unref();
    return this.handles.get(fh)!;
  }

  private releaseLazy(ino: number): void {
    const l = this.lazy.get(ino);
    if (!l) return;
    this.lazy.delete(ino);
    this.releaseHandle(l.fh);
  }

  private releaseOldest(): void {
    for (const [ino, l] of this.lazy) {
      if (!l.pinned) {
        this.releaseLazy(ino);
        return;
      }
    }
  }

  private sweep(): void {
    const old = Date.now() - LAZY_IDLE_MS;
    try {
      for (const [ino, l] of this.lazy) if (!l.pinned && l.used < old) this.releaseLazy(ino);
    } catch (err) {
      this.errno(err, 'release', 0);
    }
    if (this.lazy.size === 0) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }

  /** Releases every read handle (unmount). */
  releaseAll(): void {
    for (const ino of [...this.lazy.keys()]) this.releaseLazy(ino);
    clearInterval(this.sweeper);
    this.sweeper = undefined;
  }

  private readerOpened(ino: number): void {
    this.readers.set(ino, (this.readers.get(ino) ?? 0) + 1);
  }

  private readerClosed(ino: number): void {
    const left = (this.readers.get(ino) ?? 1) - 1;
    if (left > 0) {
      this.readers.set(ino, left);
      return;
    }
    this.readers.delete(ino);
    // The last reader is gone: its read handle too (the tree counts it as an open file).
    this.releaseLazy(ino);
  }

  /**
   * A file about to be unlinked or replaced while readers hold it (opens
   * answered in C): a pinned read handle keeps its content readable for
   * them, as the tree keeps any open file, until the last one is released.
   */
  private pin(p: string): void {
    const n = this.nodes.at(p);
    if (!n || n.isDir || !this.readers.get(n.id)) return;
    const l = this.lazy.get(n.id);
    if (l) {
      l.pinned = true;
      return;
    }
    const fh = this.addHandle(this.tree.open(p, 0), n, 0);
    this.lazy.set(n.id, { fh, used: Date.now(), pinned: true });
  }

  private forget(ino: number, count: number): void {
    if (this.nodes.node(ino).lookups - count <= 0) {
      this.dropAttr(ino);
      if (!this.lazy.get(ino)?.pinned) this.releaseLazy(ino);
    }
    this.nodes.forget(ino, count);
  }

  get openHandles(): number {
    return this.handles.size;
  }

  // ----------------------------------------------------------- invalidation

  /**
   * Paths that changed under the kernel: drop its cached node (attributes,
   * pages), the name in its directory (also a cached "no such name"), and
   * the directory's listing. A path whose directory the kernel does not know
   * is dropped at its deepest known ancestor.
   */
  invalidate(paths: readonly string[]): void {
    if (!this.session || this.exited) return;
    const dirs = new Set<number>();
    for (const p of paths) {
      const n = this.nodes.at(p);
      if (n) {
        this.dropAttr(n.id);
        this.b.invalidate(this.session, n.id);
        // With the writeback cache the kernel trusts its own size and mtime of a file it keeps in
        // memory over ours; unless it is open for writing here, the path gets a new node id, so the
        // kernel's next lookup makes a fresh inode. Readers keep the old one; a writer keeps its pages.
        if (!this.openForWriting(n)) this.nodes.retire(p);
      }
      let child = p;
      while (child !== '') {
        const slash = child.lastIndexOf('/');
        const dir = slash < 0 ? '' : child.slice(0, slash);
        const d = this.nodes.at(dir);
        if (d) {
          this.b.invalidate(this.session, d.id, child.slice(slash + 1));
          dirs.add(d.id);
          break;
        }
        child = dir;
      }
    }
    for (const id of dirs) {
      this.listings.delete(id);
      this.b.invalidate(this.session, id);
    }
  }

  stats(): AdapterStats {
    return {
      ops: { ...this.counts }, maxWrite: this.maxWrite, maxRead: this.maxRead, eio: this.eio, openHandles: this.handles.size,
      nodes: this.nodes.size,
    };
  }
}

export function libfuse3Options(opts: MountOptions): string {
  const o = [
    `fsname=${escapeOption(opts.fsname ?? 'cowfs')}`,
    'subtype=cowfs',
    // The kernel checks permissions from our mode/uid/gid itself (no ACCESS round trips).
    'default_permissions',
  ];
  if (opts.allowOther) o.push('allow_other');
  return o.join(',');
}

/**
 * Mounts `tree` at `mountpoint` through native/ and resolves once the
 * kernel's INIT arrived. The calling process serves the mount and must never
 * touch it itself (FUSE-NOTES). Unmounting is lazy: files still open keep
 * being served until they are closed, then the session ends.
 */
export async function mountTree(mountpoint: string, tree: TreeOps, opts: Libfuse3Options = {}): Promise<MountHandle> {
  const b = libfuse3Binding();
  const mp = path.resolve(mountpoint);
  const options = libfuse3Options(opts);
  const log = opts.logger ?? defaultLogger;
  const ttl = opts.cacheTimeout ?? DAY;
  const s = new Libfuse3Session(b, tree, log, ttl);
  const before = new Set(fuseMountsAt(mp).map((m) => m.device));
  const newMount = () => fuseMountsAt(mp).filter((m) => !before.has(m.device)).pop();
  const features = (opts.writeback ?? true ? Feature.WRITEBACK : 0) | (opts.readdirplus ?? true ? Feature.READDIRPLUS : 0)
    | (opts.debug ? Feature.DEBUG : 0);
  try {
    await new Promise<void>((resolve, reject) => {
      const timeoutMs = opts.initTimeoutMs ?? 15_000;
      const timer = setTimeout(() => reject(new Error(`no FUSE INIT from the kernel within ${timeoutMs} ms`)), timeoutMs);
      s.onInit = (err) => {
        clearTimeout(timer);
        if (err) reject(err);
        else resolve();
      };
      try {
        s.session = b.mount(mp, options, features, opts.maxWrite ?? 1 << 20, s.dispatch);
      } catch (err) {
        clearTimeout(timer);
        reject(err);
      }
    });
  } catch (err) {
    if (newMount()) await lazyUnmount(mp);
    if (s.session && !s.exited) b.exit(s.session);
    throw new Error(`cannot mount ${mp}: ${(err as Error).message}`);
  }
  const device = newMount()?.device ?? '';
  const unsubscribe = opts.watchChanges?.((paths) => {
    // Our own requests changed the tree through the kernel, which knows already.
    if (!s.inRequest) s.invalidate(paths);
  });

  let unmounting: Promise<void> | null = null;
  return {
    mountpoint: mp,
    options,
    device,
    stats: () => s.stats(),
    unmount(): Promise<void> {
      unmounting ??= (async () => {
        unsubscribe?.();
        await unmountKernel(mp, device);
        s.releaseAll();
        // Not busy: the kernel ends the connection and the loop exits (EXIT closes the session).
        // Busy: open files are still served; the session ends when the last is closed.
      })();
      return unmounting;
    },
  };
}


