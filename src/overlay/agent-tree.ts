import fs from 'node:fs';
import type { LayerOp } from '../events/types.js';
import type { EventLog } from '../events/log.js';
import type { BlobStore } from '../store/blobs.js';
import type { Store } from '../store/env.js';
import {
  FsError, O_ACCMODE, O_APPEND, O_EXCL, O_TRUNC, RENAME_NOREPLACE, S_IFDIR, S_IFREG,
  type Attr, type DirEntryInfo, type LentWrites, type StatFs, type TreeOps,
} from './contract.js';
import type { DirEntry, FileEntry, LiveEntry, SymlinkEntry } from './entry.js';
import type { Layer, LayerChange } from './layer.js';
import { chainPaths, opPaths } from './layer-ops.js';
import { fileMtimeMs, modeFrom, OpenFile } from './open-file.js';
import { baseName, checkPath, isWithin, parentOf, reroot } from './paths.js';
import { attrOf, kindOf, TreeView, type Resolved } from './view.js';
import type { Workspace } from './workspace.js';

/** What every agent tree shares: the store, the log, the workspace. */
export interface TreeServices {
  store: Store;
  blobs: BlobStore;
  log: EventLog;
  workspace: Workspace;
  allocIno(): number;
}

/** What the crash-recovery record of a file being written holds. */
export interface DirtyRecord {
  agent: string;
  path: string;
  meta: OpenFile['meta'];
  /** The scratch file carries the MODE_ON_FILE bits (records written before it did lack this). */
  modeOnFile?: true;
}

/**
 * One agent's working tree: its own layer on top of its base commit's tree.
 * Implements the adapter contract; every change is a LayerOp applied to the
 * layer, persisted and logged in one store transaction.
 */
export class AgentTree implements TreeOps {
  private view: TreeView;
  /** The tree below the agent's own layer (its base commit's tree). */
  private lower: TreeView;
  /**
   * True while the event of a write is being logged (at a close, a settle): what it records is
   * what the agent's own mount already shows, so its listeners need not invalidate anything.
   */
  ingesting = false;
  /** Files open in this tree, by their current path. */
  private readonly files = new Map<string, OpenFile>();
  /** Told of the paths a change from outside the mounts is about to make (see onBeforeChange). */
  private readonly beforeChange = new Set<(paths: readonly string[]) => void>();
  /** Told of announced paths whose change then failed (see onAbandonedChange). */
  private readonly abandoned = new Set<(paths: readonly string[]) => void>();
  /** Told before the open files are stored outside the adapters' requests (onSettle). */
  private readonly settling = new Set<() => void>();
  /** The lists announced since the last `endChange` (a change's transaction). */
  private announced: (readonly string[])[] = [];
  private readonly handles = new Map<number, { file: OpenFile; flags: number }>();
  private nextFh = 1;
  /**
   * When a name was last made, removed or moved in a directory through this tree: its mtime
   * moves, as on disk (git's untracked cache skips a directory whose mtime it has seen). Kept in
   * memory, not logged (an event per new file would be one more store write each); after a
   * restart a directory shows its recorded time again.
   */
  private readonly dirChanged = new Map<string, number>();

  constructor(readonly agent: string, readonly layer: Layer, chain: Layer[], private readonly s: TreeServices) {
    this.view = new TreeView([layer, ...chain], s.workspace);
    this.lower = new TreeView(chain, s.workspace);
  }

  /**
   * Puts the agent on another base (after a rebase). Files held open only
   * for reading keep what they opened but no longer stand for their path
   * (as in applyChanges): the next open sees the new base.
   */
  setChain(chain: Layer[]): void {
    const paths = chainPaths(this.lower.layers, chain);
    this.announce(() => paths);
    const existed = this.existing(paths);
    this.view = new TreeView([this.layer, ...chain], this.s.workspace);
    this.lower = new TreeView(chain, this.s.workspace);
    for (const [p, f] of this.files) if (!f.scratch) this.files.delete(p);
    this.namesChangedBy(paths, existed);
  }

  get tree(): TreeView {
    return this.view;
  }

  /**
   * Calls `fn` with the paths (a superset) that a change made from outside
   * the mounts (a rebase, an undo, a landing) is about to change, before it
   * does: what is still there can be opened, and a file open keeps what it
   * opened. Returns the unsubscribe function.
   */
  onBeforeChange(fn: (paths: readonly string[]) => void): () => void {
    this.beforeChange.add(fn);
    return () => this.beforeChange.delete(fn);
  }

  /**
   * Calls `fn` with paths announced (onBeforeChange) for a change whose transaction then failed:
   * a listener that kept what the kernel held there lets it go as after a change (invalidating
   * paths that did not change costs a lookup). Returns the unsubscribe function.
   */
  onAbandonedChange(fn: (paths: readonly string[]) => void): () => void {
    this.abandoned.add(fn);
    return () => this.abandoned.delete(fn);
  }

  /**
   * Calls `fn` before the open files are stored outside the adapters' requests (settle, a
   * truncation by path): an adapter gives back what it lent (lendFd). Returns the unsubscribe.
   */
  onSettle(fn: () => void): () => void {
    this.settling.add(fn);
    return () => this.settling.delete(fn);
  }

  /** `paths` is only listed when someone listens (a rebase's can be every path of a commit). */
  private announce(paths: () => readonly string[]): void {
    if (this.beforeChange.size === 0) return;
    const list = paths();
    if (list.length === 0) return;
    this.announced.push(list);
    for (const fn of this.beforeChange) fn(list);
  }

  /** The transaction of a change from outside the mounts ended (Overlay.atomically): `committed` or not. */
  endChange(committed: boolean): void {
    const lists = this.announced;
    this.announced = [];
    if (!committed && lists.length > 0) for (const fn of this.abandoned) fn(lists.flat());
  }

  // ---- reads -------------------------------------------------------------

  getattr(p: string): Attr {
    const f = this.files.get(checkPath(p));
    if (f?.scratch) return this.fileAttr(f);
    const a = attrOf(this.resolve(p));
    const changed = this.dirChanged.get(p);
    const newer = changed !== undefined && changed > a.mtimeMs && (a.mode & S_IFDIR) === S_IFDIR;
    return newer ? { ...a, mtimeMs: changed, ctimeMs: changed } : a;
  }

  fgetattr(fh: number): Attr {
    const f = this.handle(fh).file;
    return !f.scratch && f.openedAttr ? f.openedAttr : this.fileAttr(f);
  }

  readdir(p: string): DirEntryInfo[] {
    const names = this.view.list(checkPath(p));
    if (!names) throw new FsError(this.view.lookup(p) ? 'ENOTDIR' : 'ENOENT');
    for (const q of this.files.keys()) {
      if (parentOf(q) === p && q !== '' && !names.has(baseName(q))) names.set(baseName(q), S_IFREG);
    }
    return [...names].map(([name, type]) => ({ name, type }));
  }

  readlink(p: string): string {
    const r = this.resolve(p);
    if (kindOf(r) !== 'symlink') throw new FsError('EINVAL', `${p} is not a symlink`);
    return r.src === 'layer' ? (r.entry as SymlinkEntry).target : fs.readlinkSync(r.node.realPath);
  }

  access(p: string, mask: number, uid: number, gid: number): void {
    const a = this.getattr(p);
    if (mask === 0) return;
    if (uid === 0) {
      if (mask & 1 && (a.mode & S_IFDIR) !== S_IFDIR && (a.mode & 0o111) === 0) throw new FsError('EACCES');
      return;
    }
    const bits = uid === a.uid ? (a.mode >> 6) & 7 : gid === a.gid ? (a.mode >> 3) & 7 : a.mode & 7;
    if ((bits & mask) !== mask) throw new FsError('EACCES');
  }

  read(fh: number, buf: Buffer, length: number, position: number): number {
    return this.handle(fh).file.read(buf, length, position);
  }

  statfs(): StatFs {
    const st = fs.statfsSync(this.s.store.stateDir);
    return {
      bsize: st.bsize, frsize: st.bsize, blocks: st.blocks, bfree: st.bfree, bavail: st.bavail,
      files: st.files, ffree: st.ffree, favail: st.ffree, namemax: 255,
    };
  }

  // ---- open files --------------------------------------------------------

  open(p: string, flags: number): number {
    checkPath(p);
    let file = this.files.get(p);
    if (!file) {
      const r = this.resolve(p);
      const kind = kindOf(r);
      // Directories are opened with opendir; symlinks are followed by the kernel before open.
      if (kind === 'dir') throw new FsError('EISDIR');
      if (kind === 'symlink') throw new FsError('ELOOP');
      file = this.track(p, r);
    }
    if ((flags & O_ACCMODE) !== 0 && flags & O_TRUNC) {
      this.copyUp(file, true);
      file.truncate(0);
    }
    return this.addHandle(file, flags);
  }

  create(p: string, mode: number, flags: number, uid: number, gid: number): number {
    checkPath(p);
    if (this.files.has(p) || this.view.lookup(p)) {
      if (flags & O_EXCL) throw new FsError('EEXIST');
      return this.open(p, flags);
    }
    this.checkParentDir(p);
    const file = new OpenFile(p, {
      mode: mode & 0o7777, mtimeMs: Date.now(), ino: this.s.allocIno(), uid, gid, baseHash: null,
    }, { empty: true }, 0, this.s.blobs);
    this.files.set(p, file);
    this.copyUp(file, true);
    file.dirty = true;
    this.namesChanged(p);
    return this.addHandle(file, flags);
  }

  write(fh: number, buf: Buffer, length: number, position: number): number {
    const { file, flags } = this.handle(fh);
    if ((flags & O_ACCMODE) === 0) throw new FsError('EBADF');
    this.copyUp(file, false);
    return file.write(buf, length, flags & O_APPEND ? file.size() : position);
  }

  lendFd(fh: number): number | undefined {
    const { file, flags } = this.handle(fh);
    if ((flags & O_ACCMODE) === 0) throw new FsError('EBADF');
    if (file.isLent) return undefined;
    this.copyUp(file, false);
    return file.lend();
  }

  returnFd(fh: number, writes: LentWrites): void {
    this.handle(fh).file.returned(writes);
  }

  ftruncate(fh: number, size: number): void {
    const { file } = this.handle(fh);
    this.copyUp(file, size === 0);
    file.truncate(size);
  }

  /**
   * What fsync(2) promises, without copying the file into the store: the
   * scratch file, its name and its crash-recovery record reach the disk, so
   * after a power cut the next start ingests it (`recover`) as it would
   * after a killed daemon. The put event comes at the last close, as for
   * any write (a 1 GiB `dd conv=fsync` no longer copies and hashes 1 GiB).
   * What was put already (a settle, or a close the adapter reported before
   * this fsync came) reaches the disk too: its blob file and the store.
   */
  fsync(fh: number): void {
    const { file } = this.handle(fh);
    if (file.scratch) this.s.store.syncScratch(file.scratch.fd);
    const src = file.source;
    if ('blob' in src) this.s.blobs.syncFile(src.blob);
    this.s.store.syncToDisk();
  }

  release(fh: number): void {
    this.releaseAll([fh]);
  }

  /**
   * Releases several handles at once (an adapter's idle sweep): the puts of
   * the files they close commit in one store transaction, in this order.
   */
  releaseAll(fhs: readonly number[]): void {
    const closing: OpenFile[] = [];
    for (const { file } of fhs.map((fh) => this.handle(fh))) if (--file.refs === 0) closing.push(file);
    for (const fh of fhs) this.handles.delete(fh);
    this.close(closing);
  }

  truncate(p: string, size: number): void {
    checkPath(p);
    for (const fn of this.settling) fn();
    let file = this.files.get(p);
    if (!file) {
      const r = this.resolve(p);
      if (kindOf(r) !== 'file') throw new FsError(kindOf(r) === 'dir' ? 'EISDIR' : 'EINVAL');
      file = this.track(p, r);
    }
    file.refs++;
    try {
      this.copyUp(file, size === 0);
      file.truncate(size);
      if (file.refs === 1) this.ingest(file, 'truncate');
    } finally {
      if (--file.refs === 0) this.close([file]);
    }
  }

  /** Ingests every file being written, so the layer holds the working tree's content (before a commit). */
  settle(): void {
    for (const fn of this.settling) fn();
    for (const f of this.files.values()) this.ingest(f, 'put');
  }

  /** Ingests a scratch file left by a crash (Overlay.recover); its own mtime is the file's (OpenFile.setMeta). */
  recover(p: string, scratchFile: string, rec: DirtyRecord): void {
    const st = fs.statSync(scratchFile);
    const meta = { ...rec.meta, mtimeMs: fileMtimeMs(st), mode: rec.modeOnFile ? modeFrom(rec.meta.mode, st.mode) : rec.meta.mode };
    const hash = this.s.blobs.putFile(scratchFile, 'link');
    const size = this.s.blobs.size(hash);
    const cur = this.layer.get(p);
    if (cur?.kind === 'file' && cur.hash === hash && cur.mode === meta.mode) return;
    this.mutate({ type: 'put', path: p, entry: { kind: 'file', hash, size, ...meta } });
  }

  /**
   * Applies recorded changes to the layer (a rebase), persisting them; the
   * caller logs the event that carries them, in the same transaction.
   * Files held open only for reading at those paths keep what they opened
   * but no longer stand for the path; a file being written keeps its
   * writer's content, which wins at its next ingest (as an editor's save
   * would).
   */
  applyChanges(changes: readonly LayerChange[]): void {
    const paths = changes.map(([p]) => p);
    this.announce(() => paths);
    const existed = this.existing(paths);
    this.layer.applyChanges(changes);
    this.persist(changes);
    this.forgetReaders(changes);
    this.namesChangedBy(paths, existed);
  }

  private existing(paths: readonly string[]): boolean[] {
    return paths.map((p) => this.view.lookup(p) !== undefined);
  }

  /**
   * Of `paths`, those a change outside this tree's own operations made or removed (a rebase, a
   * new base, an undo): their directories' mtimes move, as for a write here (git's untracked
   * cache trusts them).
   */
  private namesChangedBy(paths: readonly string[], existed: readonly boolean[]): void {
    paths.forEach((p, i) => {
      if ((this.view.lookup(p) !== undefined) !== existed[i]) this.namesChanged(p);
    });
  }

  /** Files open only for reading at changed paths keep what they opened but no longer stand for the path. */
  private forgetReaders(changes: readonly LayerChange[]): void {
    for (const [p] of changes) {
      const f = this.files.get(p);
      if (f && !f.scratch) this.files.delete(p);
    }
  }

  standAside(p: string): void {
    const f = this.files.get(p);
    if (!f?.scratch || f.dirty || f.isLent) return;
    this.files.delete(p);
    // Stored already: after a crash its scratch file must not be recovered over the change.
    this.s.store.dbs.dirty.removeSync(baseName(f.scratch.file));
  }

  /**
   * Applies operations decided elsewhere (an undo, a landing) as if they
   * were written here: applied, persisted and logged; the caller runs this
   * inside its transaction. Open files are treated as in applyChanges.
   */
  applyOps(ops: readonly LayerOp[]): void {
    for (const op of ops) {
      const paths = opPaths(op);
      this.announce(() => paths);
      const existed = this.existing(paths);
      const changes = this.layer.apply(op);
      this.persist(changes);
      this.s.log.append(this.agent, op);
      this.forgetReaders(changes);
      this.namesChangedBy(paths, existed);
    }
  }

  /** Blobs that files open in this tree read from or were derived from (gc keeps them). */
  openBlobs(out: Set<string>): void {
    for (const { file } of this.handles.values()) {
      const src = file.source;
      if ('blob' in src) out.add(src.blob);
      if (file.meta.baseHash) out.add(file.meta.baseHash);
    }
  }

  /** Files still open in this tree. */
  get openCount(): number {
    return this.handles.size;
  }

  // ---- namespace changes -------------------------------------------------

  unlink(p: string): void {
    checkPath(p);
    const file = this.files.get(p);
    const r = this.view.lookup(p);
    if (!r && !file) throw new FsError('ENOENT');
    if (r && kindOf(r) === 'dir') throw new FsError('EISDIR');
    if (file) this.detach(file);
    if (r) this.mutate({ type: 'delete', path: p, whiteout: this.existsBelowGiven(p, r) });
    this.namesChanged(p);
  }

  mkdir(p: string, mode: number, uid: number, gid: number): void {
    checkPath(p);
    if (p === '' || this.files.has(p) || this.view.lookup(p)) throw new FsError('EEXIST');
    this.checkParentDir(p);
    const entry: DirEntry = {
      kind: 'dir', mode: mode & 0o7777, mtimeMs: Date.now(), ino: this.s.allocIno(), uid, gid,
      opaque: this.existsBelowGiven(p, undefined), redirect: null,
    };
    this.mutate({ type: 'mkdir', path: p, entry });
    this.namesChanged(p);
  }

  rmdir(p: string): void {
    const r = this.resolve(p);
    if (p === '') throw new FsError('EBUSY');
    if (kindOf(r) !== 'dir') throw new FsError('ENOTDIR');
    if (this.readdir(p).length > 0) throw new FsError('ENOTEMPTY');
    this.mutate({ type: 'rmdir', path: p, whiteout: this.existsBelowGiven(p, r) });
    this.dirChanged.delete(p);
    this.namesChanged(p);
  }

  symlink(target: string, p: string, uid: number, gid: number): void {
    checkPath(p);
    if (p === '' || this.files.has(p) || this.view.lookup(p)) throw new FsError('EEXIST');
    this.checkParentDir(p);
    const entry: SymlinkEntry = { kind: 'symlink', target, mtimeMs: Date.now(), ino: this.s.allocIno(), uid, gid };
    this.mutate({ type: 'symlink', path: p, entry });
    this.namesChanged(p);
  }

  rename(from: string, to: string, flags: number): void {
    checkPath(from);
    checkPath(to);
    if (from === '' || to === '') throw new FsError('EBUSY');
    if (flags & ~RENAME_NOREPLACE) throw new FsError('EINVAL', 'only RENAME_NOREPLACE is supported');
    const openOnly = this.files.get(from);
    if (openOnly && !this.view.lookup(from)) this.ingest(openOnly, 'put');
    const src = this.resolve(from);
    if (from === to) return;
    if (isWithin(to, from)) throw new FsError('EINVAL', 'cannot move a directory into itself');
    this.checkParentDir(to);
    const dst = this.view.lookup(to);
    const replaced = this.files.get(to);
    if (dst || replaced) {
      if (flags & RENAME_NOREPLACE) throw new FsError('EEXIST');
      const srcDir = kindOf(src) === 'dir';
      const dstDir = dst !== undefined && kindOf(dst) === 'dir';
      if (srcDir && !dstDir) throw new FsError('ENOTDIR');
      if (!srcDir && dstDir) throw new FsError('EISDIR');
      if (dstDir && this.readdir(to).length > 0) throw new FsError('ENOTEMPTY');
      if (replaced) this.detach(replaced);
    }
    let entry = this.movedEntry(from, src);
    // An atomic save (write a temp file, rename it over the original): the merge base is what it replaced.
    if (entry.kind === 'file') entry = { ...entry, baseHash: dst && kindOf(dst) === 'file' ? this.baseOf(to, dst) : null };
    this.mutate({ type: 'move', from, to, entry, whiteout: this.existsBelowGiven(from, src) });
    this.namesChanged(from);
    this.namesChanged(to);
    // Open files follow their names; one still being written keeps the merge base the move gave it.
    for (const [q, f] of [...this.files]) {
      if (!isWithin(q, from)) continue;
      this.files.delete(q);
      if (q === from && entry.kind === 'file') f.meta.baseHash = entry.baseHash;
      f.path = reroot(q, from, to);
      this.files.set(f.path, f);
      this.saveDirty(f);
    }
  }

  chmod(p: string, mode: number): void {
    this.setMeta(p, { mode: mode & 0o7777 }, () => ({ type: 'chmod', path: p, mode: mode & 0o7777 }));
  }

  chown(p: string, uid: number, gid: number): void {
    const cur = this.getattr(p);
    const next = { uid: uid === -1 || uid === 0xffffffff ? cur.uid : uid, gid: gid === -1 || gid === 0xffffffff ? cur.gid : gid };
    this.setMeta(p, next, () => ({ type: 'chown', path: p, ...next }));
  }

  utimens(p: string, _atimeMs: number, mtimeMs: number): void {
    this.setMeta(p, { mtimeMs }, () => ({ type: 'utimens', path: p, mtimeMs }));
    this.dirChanged.delete(p); // a time set explicitly (touch -d, tar) wins
  }

  // ---- internals ---------------------------------------------------------

  /** `p` was made, removed or moved: its directory's mtime moves. */
  private namesChanged(p: string): void {
    this.dirChanged.set(parentOf(p), Date.now());
  }

  private resolve(p: string): Resolved {
    const r = this.view.lookup(checkPath(p));
    if (!r) throw new FsError('ENOENT');
    return r;
  }

  private checkParentDir(p: string): void {
    const dir = parentOf(p);
    const r = this.view.lookup(dir);
    if (!r) throw new FsError('ENOENT');
    if (kindOf(r) !== 'dir') throw new FsError('ENOTDIR');
  }

  private handle(fh: number): { file: OpenFile; flags: number } {
    const h = this.handles.get(fh);
    if (!h) throw new FsError('EBADF');
    return h;
  }

  private addHandle(file: OpenFile, flags: number): number {
    while (this.handles.has(this.nextFh)) this.nextFh = (this.nextFh % 0x7fffffff) + 1;
    const fh = this.nextFh;
    this.nextFh = (this.nextFh % 0x7fffffff) + 1;
    file.refs++;
    this.handles.set(fh, { file, flags });
    return fh;
  }

  /** Starts tracking an existing file at `p` (opened, or truncated by path). */
  private track(p: string, r: Resolved): OpenFile {
    let file: OpenFile;
    if (r.src === 'disk') {
      const st = r.node.stat;
      file = new OpenFile(p, {
        mode: st.mode & 0o7777, mtimeMs: st.mtimeMs, ino: st.ino, uid: st.uid, gid: st.gid, baseHash: null,
      }, { disk: r.node.realPath }, st.size, this.s.blobs);
    } else {
      const e = r.entry as FileEntry;
      const own = this.layer.get(p) === e;
      file = new OpenFile(p, {
        mode: e.mode, mtimeMs: e.mtimeMs, ino: e.ino, uid: e.uid, gid: e.gid, baseHash: own ? e.baseHash : e.hash,
      }, { blob: e.hash }, e.size, this.s.blobs);
    }
    file.openedAttr = attrOf(r);
    this.files.set(p, file);
    return file;
  }

  /**
   * The first write: the file's content becomes the agent's own, in a
   * scratch file. Content inherited from the workspace is stored first, so
   * the merge base (`baseHash`) survives later changes on disk.
   */
  private copyUp(file: OpenFile, empty: boolean): void {
    if (file.scratch) return;
    const src = file.source;
    if ('disk' in src) {
      const id = this.s.blobs.putFile(src.disk, 'copy');
      file.meta.baseHash = id;
      file.rebase({ blob: id }, this.s.blobs.size(id));
    }
    file.copyUp(this.s.store.scratch, empty);
    this.saveDirty(file);
  }

  /** Keeps the crash-recovery record of a file being written up to date. */
  private saveDirty(file: OpenFile): void {
    if (!file.scratch) return;
    const key = baseName(file.scratch.file);
    if (file.path === null) this.s.store.dbs.dirty.removeSync(key);
    else this.s.store.dbs.dirty.putSync(key, { agent: this.agent, path: file.path, meta: file.meta, modeOnFile: true } satisfies DirtyRecord);
  }

  /**
   * Puts what was written into the store and logs a put (or truncate): the
   * blob, the entry and the event commit in one transaction. The file stays
   * open; its crash-recovery record stays until it is closed.
   */
  private ingest(file: OpenFile, type: 'put' | 'truncate'): void {
    if (!this.holdsNewContent(file)) return;
    let learn: () => void;
    this.ingesting = true;
    try {
      learn = this.transact(() => this.putInTxn(file, type, false));
    } finally {
      this.ingesting = false;
    }
    learn();
  }

  private holdsNewContent(file: OpenFile): boolean {
    // A file still lent is taken as changed (it is given back before a settle or a release: onSettle).
    return file.scratch !== null && (file.dirty || file.isLent) && file.path !== null;
  }

  /**
   * Inside the caller's transaction: the blob of what `file` holds, its
   * entry and its event. `final`: the file is being closed for good, so a
   * large scratch file is linked into the store instead of copied. Returns
   * what the file learns once the transaction committed.
   */
  private putInTxn(file: OpenFile, type: 'put' | 'truncate', final: boolean): () => void {
    const { fd, file: name } = file.scratch!;
    const size = file.size();
    const hash = this.s.blobs.putOpenFile(fd, name, size, final ? 'link' : 'copy', file.contentHash());
    this.apply({ type, path: file.path!, entry: { kind: 'file', hash, size, ...file.meta } });
    return () => {
      file.rebase({ blob: hash }, size);
      file.dirty = false;
    };
  }

  /**
   * Files no handle holds any more: what they hold is put into the store
   * and their crash-recovery records removed, all in one transaction (an
   * idle sweep closes hundreds at once: one transaction each cost more
   * than everything else of an unpacked file); only then are their scratch
   * files let go. A killed daemon loses nothing: until that commit each
   * file has its scratch file and its record. If the transaction fails,
   * each file is closed alone, so one file's failure (a full disk) holds
   * back no other; a file that fails keeps its scratch file and record,
   * which the next start recovers.
   */
  private close(files: readonly OpenFile[]): void {
    for (const f of files) if (f.path !== null && this.files.get(f.path) === f) this.files.delete(f.path);
    try {
      this.closeTogether(files);
    } catch (err) {
      if (files.length === 1) throw err;
      let failed: unknown;
      for (const f of files) {
        try {
          this.closeTogether([f]);
        } catch (e) {
          failed ??= e;
        }
      }
      if (failed !== undefined) throw failed;
    }
  }

  private closeTogether(files: readonly OpenFile[]): void {
    const learn: (() => void)[] = [];
    this.ingesting = true;
    try {
      const dirty = this.s.store.dbs.dirty;
      this.transact(() => {
        for (const f of files) {
          if (!f.scratch) continue;
          if (this.holdsNewContent(f)) learn.push(this.putInTxn(f, 'put', true));
          // Also the record of a file unlinked, or unchanged since an ingest before a commit or rename.
          dirty.removeSync(baseName(f.scratch.file));
        }
      });
    } finally {
      this.ingesting = false;
    }
    for (const l of learn) l();
    for (const f of files) {
      const size = f.size();
      const scratch = f.close();
      if (scratch) this.s.store.scratch.release(scratch, size);
    }
  }

  /** The file's name is gone (unlink, replaced by a rename); processes holding it keep it. */
  private detach(file: OpenFile): void {
    if (file.path !== null) this.files.delete(file.path);
    file.path = null;
    this.saveDirty(file);
  }

  /** Where `p` lies in the tree below the agent's layer, honouring the layer's renamed directories; null if hidden. */
  private lowerPath(p: string): string | null {
    const r = this.layer.probeAbove(p);
    if (!r) return p;
    if (r.entry.kind === 'dir' && r.entry.redirect !== null) return reroot(p, r.at, r.entry.redirect);
    return null;
  }

  /** Does the tree below the agent's layer have `p`? Then removing it needs a whiteout. */
  private existsBelow(p: string): boolean {
    const q = this.lowerPath(p);
    return q !== null && this.lower.lookup(q) !== undefined;
  }

  /**
   * existsBelow, knowing what `p` resolves to in the agent's tree: when the
   * agent's layer says nothing about `p`, that answer is the tree below's,
   * so the disk need not be asked again.
   */
  private existsBelowGiven(p: string, r: Resolved | undefined): boolean {
    return this.layer.probe(p) ? this.existsBelow(p) : r !== undefined;
  }

  /** The entry `to` gets when `from` is renamed to it. */
  private movedEntry(from: string, src: Resolved): LiveEntry {
    const own = this.layer.get(from);
    if (own && own.kind !== 'whiteout' && own.kind !== 'dir') return own;
    if (kindOf(src) !== 'dir') return this.copiedUpEntry(src);
    // A directory: what lies below it follows it by a redirect, never by copying.
    const dir = (own ?? this.copiedUpEntry(src)) as DirEntry;
    const below = dir.opaque ? null : dir.redirect ?? (this.existsBelow(from) ? this.lowerPath(from) : null);
    return { ...dir, redirect: below, opaque: below === null };
  }

  /** The merge base of what `p` holds: its own entry's base, or the inherited content itself. */
  private baseOf(p: string, r: Resolved): string | null {
    const own = this.layer.get(p);
    if (own?.kind === 'file') return own.baseHash;
    return r.src === 'layer' ? (r.entry as FileEntry).hash : this.s.blobs.putFile(r.node.realPath, 'copy');
  }

  /** An inherited entry as the agent's own, content unchanged (chmod, rename). */
  private copiedUpEntry(r: Resolved): LiveEntry {
    if (r.src === 'layer') {
      const e = r.entry;
      if (e.kind === 'file') return { ...e, baseHash: e.hash };
      if (e.kind === 'dir') return { ...e, opaque: false, redirect: null };
      return e;
    }
    const st = r.node.stat;
    const common = { mtimeMs: st.mtimeMs, ino: st.ino, uid: st.uid, gid: st.gid };
    switch (r.node.kind) {
      case 'file': {
        const hash = this.s.blobs.putFile(r.node.realPath, 'copy');
        return { kind: 'file', hash, size: st.size, mode: st.mode & 0o7777, baseHash: hash, ...common };
      }
      case 'dir':
        return { kind: 'dir', mode: st.mode & 0o7777, opaque: false, redirect: null, ...common };
      case 'symlink':
        return { kind: 'symlink', target: fs.readlinkSync(r.node.realPath), ...common };
    }
  }

  /**
   * chmod/chown/utimens: a file being written carries it to its ingest;
   * anything else is copied up first. Changing nothing changes nothing (tar
   * chowns every file it unpacks to the owner it already has).
   */
  private setMeta(p: string, meta: Partial<OpenFile['meta']>, op: () => LayerOp): void {
    const file = this.files.get(checkPath(p));
    if (file?.scratch) {
      file.refresh();
      if (sameMeta(file.meta, meta)) return;
      // Its ingest carries the new attributes; until then the crash-recovery record does, or for a
      // new time and most chmods the scratch file itself (no store transaction per such SETATTR).
      const recorded = file.recordChangesWith(meta);
      file.setMeta(meta);
      if (recorded) this.saveDirty(file);
      return;
    }
    if (file) file.setMeta(meta);
    const r = this.resolve(p);
    const own = this.layer.get(p);
    if (!own || own.kind === 'whiteout') {
      const entry = this.copiedUpEntry(r);
      this.mutate(entry.kind === 'file' ? { type: 'put', path: p, entry }
        : entry.kind === 'dir' ? { type: 'mkdir', path: p, entry }
        : { type: 'symlink', path: p, entry });
    } else if (sameMeta(own, meta)) {
      return;
    }
    this.mutate(op());
  }

  private fileAttr(f: OpenFile): Attr {
    const size = f.size(); // first: a lent file's mtime is read with its size
    const m = f.meta;
    return {
      ino: m.ino, mode: S_IFREG | m.mode, size, nlink: f.path === null ? 0 : 1, uid: m.uid, gid: m.gid,
      atimeMs: m.mtimeMs, mtimeMs: m.mtimeMs, ctimeMs: m.mtimeMs,
    };
  }

  private persist(changes: readonly LayerChange[]): void {
    for (const [p, e] of changes) {
      if (e) this.s.store.dbs.layers.putSync([this.agent, p], e);
      else this.s.store.dbs.layers.removeSync([this.agent, p]);
    }
  }

  /** Applies one operation to the layer, persists it and logs it, atomically (`op` may be made inside the transaction). */
  private mutate(op: LayerOp | (() => LayerOp)): void {
    this.transact(() => this.apply(typeof op === 'function' ? op() : op));
  }

  /** Inside the caller's transaction: one operation applied to the layer, persisted and logged. */
  private apply(op: LayerOp): void {
    this.persist(this.layer.apply(op));
    this.s.log.append(this.agent, op);
  }

  /** Runs `fn` as one store transaction; subscribers hear of its events once it committed. */
  private transact<T>(fn: () => T): T {
    const { store, log } = this.s;
    let result: T;
    try {
      result = store.txn(fn);
    } catch (err) {
      log.discardPending();
      throw err;
    }
    log.publish();
    return result;
  }
}

/** Does `cur` already have every attribute of `next`? */
function sameMeta(cur: object, next: object): boolean {
  return Object.entries(next).every(([k, v]) => (cur as Record<string, unknown>)[k] === v);
}
