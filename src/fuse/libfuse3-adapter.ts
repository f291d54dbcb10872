/**
 * The libfuse 3 adapter: kernel requests, as native/ (libfuse 3.14's
 * low-level API) delivers them by node id, turned into calls of the
 * overlay's path-based contract (`TreeOps`, src/overlay/contract.ts).
 *
 * - Node ids ↔ paths live in a NodeTable: lookups count up, FORGET counts
 *   down, renames move subtrees, unlinks detach (open files keep working by
 *   handle). A node holds no descriptor; only the handles below do.
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
 * - OPEN is answered ENOSYS in C, so the kernel never sends OPEN, and no
 *   RELEASE for any file from then on (not even for those CREATE made):
 *   every file is opened with handle 0 and its page cache kept. READ,
 *   WRITE, SETATTR and FSYNC work through one tree handle of our own per
 *   node (nodeHandle; CREATE's is the node's from the start), released once
 *   idle (a written file's put event comes then, as at a close), at FORGET,
 *   at unmount, or when the daemon's mounts hold more than their budget
 *   (handle-budget.ts: each may hold a descriptor or two). The kernel's
 *   handles are ignored.
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
  FsError, O_ACCMODE, O_APPEND, O_RDWR, S_IFDIR, S_IFMT, S_IFREG,
  type Attr, type DirEntryInfo, type TreeOps,
} from '../overlay/contract.js';
import {
  defaultLogger, ERRNO, escapeOption, isFsError, unmountKernel,
  type AdapterLogger, type AdapterStats, type MountHandle, type MountOptions,
} from './adapter-common.js';
import { Feature, loadBinding, Op, OpenReply, type Binding, type Native } from './libfuse3-binding.js';
import { raiseDirtyShare, raiseReadahead } from './bdi.js';
import { fuseMountsAt, lazyUnmount } from './mount-table.js';
import { NodeTable, ROOT_ID, type FuseNode } from './node-table.js';
import { daemonHandles, type HandleBudget, type HandleHolder } from './handle-budget.js';
import { join } from '../overlay/paths.js';

export interface Libfuse3Options extends MountOptions {
  /** Seconds the kernel may trust names, attributes and "no such name" answers (default a day: changes are invalidated). */
  cacheTimeout?: number;
  /** READDIRPLUS: listings bring each entry's node and attributes (default on). */
  readdirplus?: boolean;
  /** Largest write the kernel may send (default 1 MiB, libfuse 3.14's limit). */
  maxWrite?: number;
}

const ENOSYS = -ERRNO.ENOSYS;
const EIO = -ERRNO.EIO;
/** FUSE_SET_ATTR_* bits of setattr's to_set. */
const SET = { MODE: 1, UID: 2, GID: 4, SIZE: 8, ATIME: 16, MTIME: 32, ATIME_NOW: 128, MTIME_NOW: 256 } as const;
/**
 * A node's own tree handle (files opened without OPEN) is released after this long unused: a
 * written file's put event comes then, as at a close (the kernel tells nothing of closes); or
 * sooner, when the daemon's mounts hold more than their budget (handle-budget.ts).
 */
const NODE_IDLE_MS = 500;
/** How long an answer that changed an agent's view waits for the kernel to be told (Libfuse3Session.notified). */
const NOTIFY_WAIT_MS = 2_000;

/**
 * A handle that wrote much is kept longer once idle: 1 ms per 50 KB written through it, up to a
 * minute. Each release puts the file into the store and the next write copies it up again whole: a
 * writer appending a line to a 300 MB log after a 0.8 s pause stalled ~200 ms every time (~1 ms once the
 * handle stayed). The put event of a large file comes that much later; what was written is safe
 * meanwhile (its scratch file is recovered after a crash, fsync reaches the disk).
 */
function writtenIdleMs(bytes: number): number {
  return Math.min(60_000, Math.max(NODE_IDLE_MS, bytes / 50_000));
}

/** Directory listings kept between the READDIR calls that page through one (by node id). */
const LISTINGS_KEPT = 64;
const DAY = 86_400;
/**
 * A drain of the session's queue runs this long before the event loop gets its turn (timers, the
 * CLI's socket, other work)…
 */
const DRAIN_BUDGET_US = 2000;
/**
 * …and waits this long for the next request once the queue is empty: the process that sent the
 * last one usually sends another at once, and a wake-up of the JS thread costs ~100 µs.
 */
const DRAIN_SPIN_US = 100;

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
  /** Written through (CREATE made it, or a WRITE or truncation since it opened): a truncation to 0 starts a new put. */
  writable: boolean;
}

/** A node whose WRITEs the addon writes itself (lend). */
interface LentFile {
  /** The tree handle whose file it writes. */
  treeFh: number;
  /** Its changes (bytes written, times set) at the last look (noteWritesHere). */
  seen: number;
}

/** The tree handle that serves a node's requests with handle 0 (every file is opened without OPEN). */
interface NodeHandle {
  fh: number;
  used: number;
  /** Bytes written through it: the more, the longer it is kept once idle (writtenIdleMs). */
  written: number;
  /** Kept until FORGET: the node's name is gone (unlink, replaced) while the kernel may still hold it open. */
  pinned: boolean;
}

export class Libfuse3Session implements HandleHolder {
  readonly nodes = new NodeTable();
  private readonly handles = new Map<number, OpenHandle>();
  private nextFh = 1;
  private readonly listings = new Map<number, Listing>();
  private readBuf = Buffer.alloc(0);
  /** True while a request of this mount is being answered: tree events then come from our own kernel. */
  inRequest = false;
  readonly counts: Record<string, number> = Object.create(null);
  /** When the last request reached JS (ms since the epoch), FORGETs aside. */
  private lastRequestAt = 0;
  maxWrite = 0;
  maxRead = 0;
  eio = 0;
  session: Native | undefined;
  onInit: ((err: Error | null) => void) | null = null;
  onExit: (() => void) | null = null;
  exited = false;
  /** Whether the kernel's writeback cache is on (the mount's features). */
  writeback = true;
  /** Sizes of the files at paths about to change under the kernel (keepHeld), for their nodes' tails (invalidate). */
  private readonly sizesBefore = new Map<string, number>();

  /** Nodes whose attributes the addon holds (cacheAttr, not dropped since). */
  private readonly inC = new Set<number>();
  /** Directories whose every name the addon knows (knowNames, not forgotten since). */
  private readonly namesInC = new Set<number>();
  /** Node id → its own tree handle. */
  private readonly byNode = new Map<number, NodeHandle>();
  /** Nodes whose WRITEs the addon writes itself (lend). */
  private readonly lent = new Map<number, LentFile>();
  /** [node, handle] of the RELEASEs of the current drain (releaseClosed). */
  private closed: [number, number][] = [];
  private sweeper: NodeJS.Timeout | undefined;

  constructor(private readonly b: Binding, private readonly tree: TreeOps, private readonly log: AdapterLogger,
    private readonly ttl: number, private readonly budget: HandleBudget = daemonHandles) {}

  /** Drains the requests waiting in C; again after the event loop ran while some remain. */
  pump = (): void => {
    let more = true; // dispatch never throws; if it did, the requests after it must still be served
    try {
      more = !this.exited && this.b.drain(this.session!, DRAIN_BUDGET_US, DRAIN_SPIN_US);
    } finally {
      this.releaseClosed();
      if (more) setImmediate(this.pump);
    }
  };

  dispatch = (op: number, req: Native | undefined, ino: number, name1: string | undefined, name2: string | undefined,
    data: Buffer | undefined, n0: number, n1: number, n2: number, n3: number, n4: number, n5: number, n6: number, n7: number): void => {
    const name = OP_NAMES[op] ?? String(op);
    this.counts[name] = (this.counts[name] ?? 0) + 1;
    if (op !== Op.FORGET) this.lastRequestAt = Date.now(); // the kernel letting go is no sign of work
    this.inRequest = true;
    try {
      switch (op) {
        case Op.INIT: return this.init();
        case Op.EXIT: return this.exit();
        case Op.FORGET: return this.forget(ino, n0);
        case Op.LOOKUP: return this.lookup(req!, ino, name1!);
        case Op.GETATTR: return this.getattr(req!, ino);
        case Op.SETATTR: return this.setattr(req!, ino, n1, n2, n3, n4, n5, n6, n7);
        case Op.READLINK: return this.b.replyReadlink(req!, this.tree.readlink(this.nodes.pathOf(ino)));
        case Op.MKDIR: return this.mkdir(req!, ino, name1!, n0, n1, n2);
        case Op.UNLINK: return this.remove(req!, ino, name1!, false);
        case Op.RMDIR: return this.remove(req!, ino, name1!, true);
        case Op.SYMLINK: return this.symlink(req!, ino, name1!, name2!, n1, n2);
        case Op.RENAME: return this.rename(req!, ino, name1!, n0, name2!, n1);
        case Op.READ: return this.read(req!, ino, n1, n2);
        case Op.WRITE: return this.write(req!, ino, data!, n2, n3 !== 0);
        case Op.RELEASE: return this.release(req!, ino, n0);
        case Op.FSYNC: return this.fsync(req!, ino);
        case Op.READDIR: return this.readdir(req!, ino, n1, n2);
        case Op.READDIRPLUS: return this.readdirplus(req!, ino, n1, n2);
        case Op.STATFS: return this.statfs(req!);
        case Op.CREATE: return this.create(req!, ino, name1!, n0, n1, n2, n4);
        default:
          if (req) this.b.replyErr(req, ENOSYS);
      }
    } catch (err) {
      const errno = this.errno(err, name, ino, name1);
      if (req) this.b.replyErr(req, errno);
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

  private init(): void {
    this.onInit?.(null);
    this.onInit = null;
  }

  /**
   * Resolves once the kernel has been told of every invalidation asked for so far (the addon's
   * thread writes them in order: usually within microseconds, later on a loaded machine); later
   * ones do not hold it up. Gives up after NOTIFY_WAIT_MS: a notification can wait for an inode
   * lock that a request holds, and requests are served meanwhile (this awaits), so it comes late.
   */
  async notified(): Promise<void> {
    const target = this.notes()?.[0];
    if (target === undefined) return;
    const end = Date.now() + NOTIFY_WAIT_MS;
    for (;;) {
      const written = this.notes()?.[1];
      if (written === undefined || written >= target) return;
      if (Date.now() > end) {
        this.log.warn({ waiting: target - written }, 'cowfs: kernel invalidations still unwritten');
        return;
      }
      await new Promise((r) => setTimeout(r, 1));
    }
  }

  /** [queued, written] invalidations of a live session; undefined once it ended. */
  private notes(): [number, number] | undefined {
    return this.session && !this.exited ? this.b.notes(this.session) : undefined;
  }

  /** The session's end: whatever the release of the handles left open throws, the session is closed. */
  private exit(): void {
    this.exited = true;
    try {
      this.releaseNodeHandles(true);
    } catch (err) {
      this.log.error({ err }, 'cowfs: could not release the files left open at the end of the session');
    } finally {
      this.stopSweeper();
      this.budget.emptied(this);
      if (this.session) this.b.close(this.session);
      this.onInit?.(new Error('the session ended before the kernel sent INIT'));
      this.onInit = null;
      this.onExit?.();
    }
  }

  // --------------------------------------------------------------- replies

  private attrArgs(a: Attr): [number, number, number, number, number, number, number, number, number] {
    return [a.ino, a.mode, a.nlink, a.uid, a.gid, a.size, a.atimeMs, a.mtimeMs, a.ctimeMs];
  }

  private replyEntry(req: Native, p: string, a: Attr): void {
    this.replyNode(req, this.entry(p, a), a);
  }

  /** One more lookup of `p` the kernel will hold: its node, whose attributes GETATTR answers in C. */
  private entry(p: string, a: Attr): FuseNode {
    const n = this.nodes.lookup(p, (a.mode & S_IFMT) === S_IFDIR);
    this.remember(n, a);
    return n;
  }

  private replyNode(req: Native, n: FuseNode, a: Attr): void {
    this.b.replyEntry(req, n.id, ...this.attrArgs(a), this.ttl, this.ttl);
  }

  /** Attributes of a node: through its own handle if it has one (or was unlinked while open), else by path. */
  private attrOf(ino: number): Attr {
    const h = this.ownHandle(ino);
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

  private getattr(req: Native, ino: number): void {
    const a = this.attrOf(ino);
    this.remember(this.nodes.node(ino), a);
    this.b.replyAttr(req, ...this.attrArgs(a), this.ttl);
  }

  /**
   * The next GETATTRs of a file or directory are answered in C with `a`
   * (once a file was read to its end the kernel asks again at its next
   * fstat; after each name made or removed in a directory, the kernel asks
   * for the directory's), until dropAttr: whatever may change them drops it
   * first (every WRITE and SETATTR too; a name changed in a directory through
   * the mount caches its new attributes before the reply, nameChanged; an
   * invalidation drops the directories it reaches). Not for unlinked files
   * or symlinks.
   */
  private remember(n: FuseNode, a: Attr): void {
    const type = a.mode & S_IFMT;
    if (this.session && (type === S_IFREG || type === S_IFDIR) && n.path !== null) {
      this.b.cacheAttr(this.session, n.id, ...this.attrArgs(a), this.ttl);
      this.inC.add(n.id);
    }
  }

  /** No call into the addon for a node it holds nothing of (every WRITE drops). */
  private dropAttr(id: number): void {
    if (this.session && this.inC.delete(id)) this.b.dropAttr(this.session, id);
  }

  // ------------------------------------------------- names made in directories

  /**
   * Runs `make`, a tree operation that makes `name` in directory `dir`, then
   * `reply`. The directory's attributes (links, size, mtime) change: dropped
   * first, cached again before the reply (the kernel asks for them right
   * after). The addon learns the name before the tree makes it, so it never
   * answers "no such name" for it. If anything fails once the tree may have
   * made the name, neither the addon nor the kernel may trust what they knew
   * of it (nameUnsure).
   */
  private making(dir: number, name: string, make: () => void, reply: () => void): void {
    this.dropAttr(dir);
    if (this.session && this.namesInC.has(dir)) this.b.addName(this.session, dir, name);
    let made = false;
    try {
      make();
      made = true;
      this.nameChanged(dir);
      reply();
    } catch (err) {
      if (made || !isFsError(err)) this.nameUnsure(dir, name);
      throw err;
    }
  }

  /** A name in `dir` changed through the mount: its new attributes, for GETATTR in C. */
  private nameChanged(dir: number): void {
    const n = this.nodes.node(dir);
    const a = n.path === null ? undefined : this.entryAttr(n.path);
    if (a) this.remember(n, a);
  }

  private nameUnsure(dir: number, name: string): void {
    this.forgetNames(dir);
    this.dropAttr(dir);
    if (this.session && !this.exited) this.b.invalidate(this.session, dir, name);
  }

  /** A directory made through the mount, empty: the addon answers LOOKUPs of names missing from it. */
  private knowNames(n: FuseNode, p: string): void {
    if (!this.session || this.tree.readdir(p).length > 0) return;
    this.b.knowNames(this.session, n.id, this.ttl);
    this.namesInC.add(n.id);
  }

  private forgetNames(dir: number): void {
    if (this.session && this.namesInC.delete(dir)) this.b.forgetNames(this.session, dir);
  }

  private setattr(req: Native, ino: number, toSet: number, mode: number, uid: number, gid: number,
    size: number, atimeMs: number, mtimeMs: number): void {
    let h = this.ownHandle(ino);
    const n = this.nodes.node(ino);
    const p = n.path;
    // A new mode is every node's of the file: the addon compares a chmod with its cached one (meta_here).
    if (toSet & SET.MODE && p !== null) this.dropAttrAt(p);
    else this.dropAttr(ino);
    if (toSet & SET.SIZE) {
      // Not while the addon writes the file (its hash would go on from bytes the truncation changed).
      this.writeAlone(ino);
      this.takeBack(ino);
      if (size === 0 && h?.writable && p !== null && !this.byNode.get(ino)!.pinned) {
        // Truncating to 0 is how a rewrite starts (open with O_TRUNC): what was written before, whose
        // close the kernel does not tell, gets its put event now, as at a close; a new handle starts.
        this.releaseNodeHandle(ino);
      }
      // Through the node's own handle, like the writes that follow: one put event for the rewrite.
      h = this.writeHandle(ino);
      this.tree.ftruncate(h.treeFh, size);
      this.lend(ino); // after a truncation to 0 (a rewrite) the addon hashes what follows
    }
    // A file unlinked while open has no path left to change: the writeback cache still flushes its
    // times at close (by handle), which nobody can observe but through the handle; let it pass.
    if (p === null && !h && !n.open?.size) throw new FsError('ENOENT');
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
    const a = this.attrOf(ino);
    // Cached, as a GETATTR's: a chown or chmod to what the file has now is answered in C (tar's).
    this.remember(n, a);
    this.b.replyAttr(req, ...this.attrArgs(a), this.ttl);
  }

  /** A handle open on a node: how a file unlinked while open is still reached. */
  private handleOf(n: FuseNode): OpenHandle {
    const open = n.open?.values().next();
    if (!open || open.done) throw new FsError('ENOENT');
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
      if (!a) return 0;
      const n = this.nodes.lookup(join(dir, name), (a.mode & S_IFMT) === S_IFDIR);
      this.remember(n, a);
      return n.id;
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
    this.making(parent, name, () => this.tree.mkdir(p, mode & 0o7777, uid, gid), () => {
      const a = this.tree.getattr(p);
      const n = this.entry(p, a);
      this.knowNames(n, p);
      this.replyNode(req, n, a);
    });
  }

  private symlink(req: Native, parent: number, name: string, target: string, uid: number, gid: number): void {
    const p = join(this.nodes.pathOf(parent), name);
    this.making(parent, name, () => this.tree.symlink(target, p, uid, gid), () => this.replyEntry(req, p, this.tree.getattr(p)));
  }

  private remove(req: Native, parent: number, name: string, dir: boolean): void {
    const p = join(this.nodes.pathOf(parent), name);
    this.dropAttrAt(p);
    this.dropAttr(parent);
    if (dir) this.tree.rmdir(p);
    else {
      this.pin(p);
      this.tree.unlink(p);
    }
    this.nodes.removed(p);
    this.nameChanged(parent);
    this.b.replyErr(req, 0);
  }

  private rename(req: Native, parent: number, name: string, newParent: number, newName: string, flags: number): void {
    const from = join(this.nodes.pathOf(parent), name);
    const to = join(this.nodes.pathOf(newParent), newName);
    this.dropAttrAt(from);
    this.dropAttrAt(to);
    this.dropAttr(parent);
    const unpinned = this.nodes.allAt(to).filter((n) => !this.byNode.get(n.id)?.pinned);
    this.pin(to);
    this.making(newParent, newName, () => {
      try {
        this.tree.rename(from, to, flags);
      } catch (err) {
        // `to` is still there: its handles are ordinary ones again (released when idle).
        for (const n of unpinned) {
          const own = this.byNode.get(n.id);
          if (own) own.pinned = false;
        }
        throw err;
      }
    }, () => {
      this.nodes.renamed(from, to);
      if (parent !== newParent) this.nameChanged(parent);
      this.b.replyErr(req, 0);
    });
  }

  /** Unlink and rename change a file's links and ctime (of every node that stands for it). */
  private dropAttrAt(p: string): void {
    for (const n of this.nodes.allAt(p)) this.dropAttr(n.id);
  }

  // ------------------------------------------------------------------ files

  private addHandle(treeFh: number, node: FuseNode, writable: boolean): number {
    const fh = this.nextFh++;
    this.handles.set(fh, { treeFh, node: node.id, writable });
    (node.open ??= new Set()).add(fh);
    return fh;
  }

  /** The node's own handle, if it has one now. */
  private ownHandle(ino: number): OpenHandle | undefined {
    const own = this.byNode.get(ino);
    return own && this.handles.get(own.fh);
  }

  /** The new file's tree handle is its node's own handle from the start (its RELEASE may never come). */
  private create(req: Native, parent: number, name: string, mode: number, uid: number, gid: number, flags: number): void {
    const p = join(this.nodes.pathOf(parent), name);
    let treeFh = 0;
    // Read-write whatever the caller asked, never O_APPEND: every later request of the node goes through
    // this handle, and the kernel places appends itself (with the writeback cache, whole pages at their
    // offsets), so an O_APPEND tree handle would move other openers' writes to the end.
    this.making(parent, name, () => {
      treeFh = this.tree.create(p, mode & 0o7777, (flags & ~(O_ACCMODE | O_APPEND)) | O_RDWR, uid, gid);
    }, () => {
      const a = this.tree.fgetattr(treeFh);
      const n = this.entry(p, a); // tar's chown to its own owner, next, is answered in C
      this.releaseNodeHandle(n.id);
      const fh = this.adopt(n, treeFh, true, false);
      this.lend(n.id);
      this.b.replyCreate(req, n.id, ...this.attrArgs(a), this.ttl, this.ttl, fh, OpenReply.KEEP_CACHE);
    });
  }

  private read(req: Native, ino: number, size: number, offset: number): void {
    if (size > this.maxRead) this.maxRead = size;
    if (this.readBuf.length < size) this.readBuf = Buffer.allocUnsafe(Math.max(size, 131072));
    const h = this.nodeHandle(ino);
    // Its own tail where it wrote one (a pinned handle on what it held before reads as it was).
    const tail = h.writable ? this.nodes.node(ino).tail : undefined;
    if (tail && offset >= tail.from) offset += tail.shift;
    // The reply is written to the kernel before replyBuf returns: one buffer serves every read.
    const n = this.tree.read(h.treeFh, this.readBuf, size, offset);
    this.b.replyBuf(req, this.readBuf, n);
  }

  /** `append`: the writer opened the file O_APPEND (and this is no page the kernel writes back). */
  private write(req: Native, ino: number, data: Buffer, offset: number, append: boolean): void {
    if (data.length > this.maxWrite) this.maxWrite = data.length;
    this.writeAlone(ino); // first: the handle's file may be the one the addon writes for another node
    const h = this.writeHandle(ino);
    const own = this.byNode.get(ino);
    if (own) own.written += data.length;
    this.dropAttr(ino); // before the size and mtime change
    const at = this.placed(ino, h, offset, append);
    const written = this.tree.write(h.treeFh, data, data.length, at);
    // The kernel put the line at its own idea of the end: it drops that, and its size, once told.
    if (at !== offset && append && this.session) this.b.invalidate(this.session, ino);
    this.lend(ino);
    this.b.replyWrite(req, written);
  }

  /**
   * Where a WRITE goes. An O_APPEND one (without the writeback cache) goes at the file's end, as on a
   * disk (the addon does the same for the files lent to it: native/cowfs_fuse.c, append_at). The kernel
   * places it at the size its inode believes, and after a change under a held file the path has a
   * second node, a second inode of the kernel's, for the same file: each writer's lines landed at its
   * own size, over the other's or past the end with NULs between. The node's tail goes with its first
   * append: its kernel learns the real size (the caller invalidates). A write at an offset lands there,
   * shifted by the node's tail where it has one.
   */
  private placed(ino: number, h: OpenHandle, offset: number, append: boolean): number {
    const n = this.nodes.node(ino);
    if (append && !this.writeback) {
      delete n.tail;
      return this.tree.fgetattr(h.treeFh).size;
    }
    const tail = n.tail;
    return tail && offset >= tail.from ? offset + tail.shift : offset;
  }

  /**
   * A write that reaches JavaScript writes a file the addon may be writing for another node of its
   * path (the one an invalidation retired, or the path's new one): that node's writes come here too
   * from now on, so the end an append reads stays the end while it writes. (The lend moves to this
   * node once the write is done: `lend`.)
   */
  private writeAlone(ino: number): void {
    const p = this.nodes.node(ino).path;
    if (p === null || this.lent.size === 0) return;
    for (const m of this.nodes.allAt(p)) if (m.id !== ino) this.takeBack(m.id);
  }

  /** Through the node's own handle, opened if the idle sweep closed it: the file's content reaches the disk either way. */
  private fsync(req: Native, ino: number): void {
    this.tree.fsync(this.nodeHandle(ino).treeFh);
    this.b.replyErr(req, 0);
  }

  /**
   * Only for files CREATE made before the kernel learnt that OPEN is not implemented. The handle
   * goes once the current drain ends, with the others released in it: one transaction for their
   * puts (one per RELEASE was the largest cost of a file unpacked into a fresh mount), and their
   * scratch files are free again for the next files created (leaving them to the idle sweep
   * kept ~1,000 open during a `tar -x`, each a new file on ext4: 1.2 ms to create here).
   */
  private release(req: Native, ino: number, fh: number): void {
    const own = this.byNode.get(ino);
    if (own?.fh === fh && !own.pinned) this.closed.push([ino, fh]);
    this.b.replyErr(req, 0);
  }

  /** Releases the handles whose RELEASE came in the drain that just ended (unless since replaced or pinned). */
  private releaseClosed(): void {
    if (this.closed.length === 0) return;
    const due = this.closed.filter(([ino, fh]) => {
      const own = this.byNode.get(ino);
      return own?.fh === fh && !own.pinned;
    }).map(([ino]) => ino);
    this.closed = [];
    try {
      this.releaseNodes(due);
    } catch (err) {
      this.errno(err, 'release', 0);
    }
  }

  // ---------------------------------------------------- a node's own handle

  /**
   * The tree handle that serves a node's reads and writes with handle 0:
   * one per node, opened read-write (the tree copies up at the first write
   * only) at the first request that needs it; released after NODE_IDLE_MS
   * unused (longer after many writes: writtenIdleMs), at FORGET, or at unmount.
   */
  private nodeHandle(ino: number): OpenHandle {
    const own = this.byNode.get(ino);
    if (own) {
      this.used(ino, own, Date.now());
      return this.handles.get(own.fh)!;
    }
    const n = this.nodes.node(ino);
    if (n.path === null) return this.handleOf(n);
    return this.handles.get(this.adopt(n, this.tree.open(n.path, O_RDWR), false, false))!;
  }

  private used(ino: number, own: NodeHandle, now: number): void {
    own.used = now;
    this.byNode.delete(ino); // to the end: the most recently used
    this.byNode.set(ino, own);
  }

  /**
   * From now on the addon writes the node's WRITEs into its handle's file itself, with no round
   * trip to JavaScript (native/cowfs_fuse.c, "writes served here"), until the handle is released.
   * Not with the writeback cache (the kernel's writeback sends a node's WRITEs several at once, so
   * one queued here could be overtaken), nor for a node whose writes land shifted (its tail: the
   * addon places O_APPEND writes at the file's end itself, but writes at an offset where they come).
   */
  private lend(ino: number): void {
    const own = this.byNode.get(ino);
    if (this.writeback || !this.session || !own || this.lent.has(ino) || this.nodes.node(ino).tail) return;
    const treeFh = this.handles.get(own.fh)!.treeFh;
    // Only a speed-up: whatever fails here, the request that asked is answered as it would be anyway.
    let fd: number | undefined;
    try {
      fd = this.tree.lendFd(treeFh);
      if (fd === undefined) return; // lent through another node (the path's, after an invalidation)
      this.b.writeTo(this.session, ino, fd);
      this.lent.set(ino, { treeFh, seen: 0 });
    } catch (err) {
      if (fd !== undefined) this.tree.returnFd(treeFh, { changed: false });
      this.log.warn({ ino, err }, 'cowfs: could not lend a file to the addon (its writes stay in JavaScript)');
    }
  }

  /**
   * Before its handle's file is closed, before the tree stores it (watchSettle), before its path
   * changes under the kernel: waits for a write in flight, and gives the tree what the addon did.
   */
  private takeBack(ino: number): void {
    const l = this.lent.get(ino);
    if (!l) return;
    this.lent.delete(ino);
    const [changes, front, hash] = (this.session && this.b.stopWriting(this.session, ino)) || [l.seen + 1, 0, undefined];
    this.noteChanges(ino, l, changes, Date.now());
    this.tree.returnFd(l.treeFh, { changed: changes > 0, hashed: hash === undefined ? undefined : { size: front, hash } });
  }

  /** Every file lent to the addon comes back (the tree is about to store them: watchSettle). */
  recallLent(): void {
    for (const ino of [...this.lent.keys()]) this.takeBack(ino);
  }

  /** What the addon wrote since the last look counts as use of those nodes' handles (the idle sweep, the budget, idleness). */
  private noteWritesHere(): void {
    if (!this.session || this.lent.size === 0) return;
    const now = Date.now();
    for (const [ino, l] of this.lent) this.noteChanges(ino, l, this.b.written(this.session, ino), now);
  }

  /** The addon's changes to a lent node since the last look count as use of its handle (bytes, and one per time set: bytes enough). */
  private noteChanges(ino: number, l: LentFile, changes: number, now: number): void {
    const own = this.byNode.get(ino);
    if (changes <= l.seen || !own) return;
    own.written += changes - l.seen;
    l.seen = changes;
    this.used(ino, own, now);
    this.lastRequestAt = now;
  }

  /**
   * The node's own handle, for a write. A retired node's unwritten handle kept for its readers
   * (keepHeld) is let go first: a holder's writes go to the file at its path, as whole pages of what
   * its kernel cached (the holder's old page wins over the change; ARCHITECTURE.md).
   */
  private writeHandle(ino: number): OpenHandle {
    const own = this.byNode.get(ino);
    if (own?.pinned && !this.handles.get(own.fh)!.writable && this.nodes.isRetired(this.nodes.node(ino))) this.releaseNodeHandle(ino);
    const h = this.nodeHandle(ino);
    h.writable = true;
    return h;
  }

  /**
   * Makes a tree handle the node's own; returns its number. A pinned one evicts nothing: pins come
   * inside a change's transaction too (keepHeld), where releasing a written handle would put its
   * file (a transaction and events of its own in the middle); the next unpinned one evicts.
   */
  private adopt(n: FuseNode, treeFh: number, writable: boolean, pinned: boolean): number {
    const fh = this.addHandle(treeFh, n, writable);
    this.byNode.set(n.id, { fh, used: Date.now(), written: 0, pinned });
    if (!pinned) this.budget.took(this, n.id);
    this.sweeper ??= setInterval(() => this.sweep(), NODE_IDLE_MS).unref();
    return fh;
  }

  private releaseNodeHandle(ino: number): void {
    this.releaseNodes([ino]);
  }

  /**
   * Releases the nodes' own handles in one call into the tree: the puts of the files they close
   * commit in one store transaction (an idle sweep after `tar -x` releases hundreds).
   */
  private releaseNodes(inos: readonly number[]): void {
    const treeFhs: number[] = [];
    const stale: string[] = [];
    for (const ino of inos) {
      const own = this.byNode.get(ino);
      if (!own) continue;
      this.byNode.delete(ino);
      const h = this.handles.get(own.fh);
      if (!h) continue;
      this.takeBack(ino);
      const n = this.nodes.node(ino);
      // Written through a node an invalidation retired (its holder wrote on across a rebase): the
      // path's newer node keeps the size the kernel had at its lookup (writeback cache), so it is
      // retired too and the next lookup sees what was written. Once the writer pauses, as a put.
      if (h.writable && this.nodes.isRetired(n) && n.path !== null) stale.push(n.path);
      this.handles.delete(own.fh);
      this.nodes.closed(h.node, own.fh);
      treeFhs.push(h.treeFh);
    }
    if (treeFhs.length > 0) this.tree.releaseAll(treeFhs);
    if (stale.length > 0) this.invalidate(stale);
  }

  /**
   * The least recently used handle but `keep`'s (byNode is kept in order of use). Asked by the
   * budget, maybe while another mount answers a request: a put that fails here (a full disk) is
   * this mount's to log, as in the idle sweep, never the other request's error (the file keeps its
   * scratch file and is recovered).
   */
  releaseOldest(keep: number): boolean {
    this.noteWritesHere();
    for (const [ino, own] of this.byNode) {
      if (!own.pinned && ino !== keep) {
        try {
          this.releaseNodeHandle(ino);
        } catch (err) {
          this.errno(err, 'release', 0);
        }
        this.stopSweeperWhenIdle();
        return true;
      }
    }
    return false;
  }

  get heldHandles(): number {
    return this.byNode.size;
  }

  private sweep(): void {
    this.noteWritesHere();
    const now = Date.now();
    const due: number[] = [];
    for (const [ino, own] of this.byNode) {
      // byNode is in order of use, and no handle is kept less than NODE_IDLE_MS: the rest are due later.
      if (now - own.used < NODE_IDLE_MS) break;
      if (!own.pinned && now - own.used >= writtenIdleMs(own.written)) due.push(ino);
    }
    try {
      this.releaseNodes(due);
    } catch (err) {
      this.errno(err, 'release', 0);
    }
    this.stopSweeperWhenIdle();
  }

  private stopSweeperWhenIdle(): void {
    if (this.byNode.size > 0) return;
    this.stopSweeper();
    this.budget.emptied(this);
  }

  private stopSweeper(): void {
    clearInterval(this.sweeper);
    this.sweeper = undefined;
  }

  /**
   * Releases the nodes' own handles: a written file's put event comes now.
   * Pinned ones only when the session ends (`all`): after a lazy unmount
   * the kernel may still read files it holds open.
   */
  releaseNodeHandles(all: boolean): void {
    this.releaseNodes([...this.byNode].filter(([, own]) => all || !own.pinned).map(([ino]) => ino));
    this.stopSweeperWhenIdle();
  }

  /**
   * A file about to be unlinked or replaced while the kernel holds its node
   * (it may be open: the kernel no longer says): a pinned handle keeps its
   * content readable, as the tree keeps any open file, until FORGET.
   * `written`: pin a handle written through too (else `invalidate` releases it).
   */
  private pin(p: string, written = true): void {
    // Nodes retired at p too (an invalidation gave the path a new node): the kernel may hold them open.
    for (const n of this.nodes.allAt(p)) {
      if (n.isDir || n.lookups <= 0) continue;
      const own = this.byNode.get(n.id);
      if (own) {
        if (written || !this.handles.get(own.fh)!.writable) own.pinned = true;
        continue;
      }
      let treeFh: number;
      try {
        treeFh = this.tree.open(p, O_RDWR);
      } catch (err) {
        if (isFsError(err)) continue; // a symlink: nothing to read through it
        throw err;
      }
      this.adopt(n, treeFh, false, true);
    }
  }

  private forget(ino: number, count: number): void {
    try {
      if (this.nodes.node(ino).lookups - count <= 0) {
        this.dropAttr(ino);
        this.forgetNames(ino);
        this.releaseNodeHandle(ino);
      }
    } finally {
      // The kernel has let go whatever the release did (a failed final put keeps its scratch for recovery).
      this.nodes.forget(ino, count);
    }
  }

  get openHandles(): number {
    return this.handles.size;
  }

  // ----------------------------------------------------------- invalidation

  /**
   * Paths about to change under the kernel without a request through this
   * mount (a rebase, an undo, a landing). A file the kernel holds there may
   * be open, unread: the kernel opens without telling us, and our handle
   * comes at the first READ, which would find the new content or nothing.
   * So each such node gets a handle on what it holds now, pinned until
   * FORGET as after an unlink, and keeps reading it (an fd opened before a
   * change reads what it opened, as on a local filesystem); a new lookup
   * after `invalidate` sees the change. A handle written through is left to
   * `invalidate`: its writer's pages keep going to the file at the path.
   */
  keepHeld(paths: readonly string[]): void {
    if (!this.session || this.exited) return;
    try {
      for (const p of paths) {
        // A file the addon writes is not to change size between here and invalidate (its tail).
        for (const n of this.nodes.allAt(p)) this.takeBack(n.id);
        // Only where the kernel knows the path (a rebase announces every path it may touch).
        const a = this.writeback || this.nodes.allAt(p).length === 0 ? undefined : this.entryAttr(p);
        if (a && (a.mode & S_IFMT) === S_IFREG) this.sizesBefore.set(p, a.size);
        this.pin(p, false);
      }
    } catch (err) {
      this.errno(err, 'keepHeld', 0);
    }
  }

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
      const before = this.sizesBefore.get(p);
      this.sizesBefore.delete(p);
      // Nodes an earlier change retired count even when no process looked the path up since: a
      // holder writing through one kept the file it wrote standing for the path, over the change
      // (an undo under an appender was undone once the idle sweep had retired the path's node).
      const held = this.nodes.allAt(p);
      if (held.length > 0) {
        const now = this.entryAttr(p);
        const gone = now === undefined;
        for (const m of held) {
          this.dropAttr(m.id);
          this.forgetNames(m.id);
          // keepHeld took back what the addon wrote there (it noted `before`).
          if (!gone && before !== undefined && !m.isDir) shiftTail(m, before, now.size);
          const own = this.byNode.get(m.id);
          if (!own || own.pinned) continue;
          // Gone from the tree: whoever holds the file keeps reading what it held, until FORGET.
          if (gone) own.pinned = true;
          // Changed: our handle must not keep standing for the path with what it held before (the
          // tree keeps a file being written over a rebase, for its writer; the kernel never says
          // whether anyone still has it open). Releasing logs what it holds first: nothing is lost,
          // and a writer's later pages land at their offsets in the new content.
          else {
            try {
              this.releaseNodeHandle(m.id);
            } catch (err) {
              // The rest of the invalidation must still happen, or the kernel keeps a stale view.
              this.log.error({ path: p, err }, 'cowfs: could not release a handle at an invalidation');
            }
          }
        }
        // A reader kept on the old content (pinned) must not keep the written file standing for the
        // path: the writer's next write (on a handle opened afresh) went into it, and its release
        // stored the content from before the change over it (a second rebase or undo under one writer).
        try {
          if (!gone) this.tree.standAside(p);
        } catch (err) {
          this.log.error({ path: p, err }, 'cowfs: could not let go of a file at an invalidation');
        }
        // With the writeback cache the kernel trusts its own size and mtime of a file it keeps in
        // memory over ours: a changed path gets a new node id, so the kernel's next lookup makes a
        // fresh inode (readers keep the old one); a path now gone detaches its nodes, as an unlink
        // does, so none of them ever stands for a file put at that name later.
        if (gone) this.nodes.removed(p);
        else this.nodes.retire(p);
      }
      let child = p;
      while (child !== '') {
        const slash = child.lastIndexOf('/');
        const dir = slash < 0 ? '' : child.slice(0, slash);
        const d = this.nodes.at(dir);
        if (d) {
          // The addon must stop answering for the directory before the kernel asks again: a LOOKUP
          // answered "no such name" from a name set not yet forgotten would be cached for the ttl.
          this.forgetNames(d.id);
          this.dropAttr(d.id);
          this.b.invalidate(this.session, d.id, child.slice(slash + 1));
          dirs.add(d.id);
          break;
        }
        child = dir;
      }
      // The name first, then the node: the addon's thread writes them in order, and a process
      // opening the path in between then looks it up afresh (the new node, all new). The other way
      // round, a reader in between went through the old entry to the old inode, half invalidated:
      // once, under load, it read the new bytes cut at the old size.
      if (n) this.b.invalidate(this.session, n.id);
    }
    for (const id of dirs) {
      // Names may have come into it (or gone), its links and mtime changed.
      this.listings.delete(id);
      this.b.invalidate(this.session, id);
    }
  }

  stats(): AdapterStats {
    this.noteWritesHere();
    const [here, largest] = this.session ? this.b.writesHere(this.session) : [0, 0];
    return {
      ops: { ...this.counts, 'write (addon)': here }, maxWrite: Math.max(this.maxWrite, largest), maxRead: this.maxRead, eio: this.eio, openHandles: this.handles.size,
      nodes: this.nodes.size, lastRequestAt: this.lastRequestAt,
    };
  }

  /**
   * Invalidates the root directory's entries but `keep`'s: the kernel drops each with what lies
   * below it that nothing holds (open files stay), and sends FORGET for them. An entry invalidated
   * is unhashed even when in use: a process whose working directory it is would get ENOENT from
   * getcwd(2), so the caller keeps those.
   */
  dropKernelCache(keep: ReadonlySet<string>): number {
    if (!this.session || this.exited) return 0;
    const names = this.nodes.topNames().filter((name) => !keep.has(name));
    for (const name of names) this.b.invalidate(this.session, ROOT_ID, name);
    return names.length;
  }
}

/**
 * A change of a file the kernel may hold took its content from `before` bytes to `after`. Without the
 * writeback cache the kernel keeps the size it believed, never asking ours: a holder writing on at
 * its file offset from the old end would write past a shorter new content (NULs before its line), or
 * inside a longer one, over its end. From the kernel's end on, its writes (and reads) follow the new
 * end. The kernel's size is what the file had before, less what an earlier change already shifted.
 * An O_APPEND write needs none of it: it goes at the file's end, and ends the tail (`placed`).
 */
function shiftTail(n: FuseNode, before: number, after: number): void {
  const kernelSize = before - (n.tail?.shift ?? 0);
  if (after === kernelSize) delete n.tail;
  else n.tail = { from: kernelSize, shift: after - kernelSize };
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
  s.writeback = (features & Feature.WRITEBACK) !== 0;
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
        s.session = b.mount(mp, options, features, opts.maxWrite ?? 1 << 20, s.dispatch, s.pump);
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
  // With the writeback cache the kernel's 1% dirty share for FUSE makes random writes page by page.
  if (!raiseDirtyShare(device)) log.warn({ device }, 'cowfs: could not raise the mount\'s dirty-page share (random writes will be slower)');
  if (!raiseReadahead(device)) log.warn({ device }, 'cowfs: could not raise the mount\'s readahead (large reads will be slower)');
  // Our own requests change the tree through the kernel, which knows already.
  const unwatch = [
    opts.watchBeforeChange?.((paths) => { if (!s.inRequest) s.keepHeld(paths); }),
    opts.watchChanges?.((paths) => { if (!s.inRequest) s.invalidate(paths); }),
    opts.watchSettle?.(() => s.recallLent()),
  ];

  let unmounting: Promise<void> | null = null;
  return {
    mountpoint: mp,
    options,
    device,
    writeback: (features & Feature.WRITEBACK) !== 0,
    stats: () => s.stats(),
    notified: () => s.notified(),
    dropKernelCache: (keep) => s.dropKernelCache(keep),
    unmount(): Promise<void> {
      unmounting ??= (async () => {
        for (const off of unwatch) off?.();
        await unmountKernel(mp, device);
        s.releaseNodeHandles(false);
        // Not busy: the kernel ends the connection and the loop exits (EXIT closes the session).
        // Busy: open files are still served; the session ends when the last is closed.
      })();
      return unmounting;
    },
  };
}


