import fs from 'node:fs';
import path from 'node:path';
import { EventLog } from '../events/log.js';
import { isLayerOp, type AgentRebased, type ConflictRecord, type CowEvent, type EventBody, type LayerOp } from '../events/types.js';
import { BlobStore } from '../store/blobs.js';
import { Store } from '../store/env.js';
import { AgentTree, type DirtyRecord } from './agent-tree.js';
import type { Entry, FileEntry } from './entry.js';
import { Layer, toRecorded, type LayerChange } from './layer.js';
import { OverlayError, Registry, type AgentRecord, type CommitRecord } from './registry.js';
import { opsBetween } from './layer-ops.js';
import { replayView } from './replay.js';
import { undoTarget } from './undo.js';
import { SettingsStore } from './settings.js';
import { TreeView } from './view.js';
import { Workspace } from './workspace.js';

/** What a conflict is resolved to: a file, a symlink, nothing, or 'below' — the agent's own entries dropped, so its base shows. */
export type Resolution = { content: Buffer; mode?: number } | { target: string } | 'deleted' | 'below';

export interface OverlayOptions {
  workspace: string;
  /** Default: `<workspace>/.cowfs`. */
  stateDir?: string;
}

function newFileDefaults(ino: number): FileEntry {
  return { kind: 'file', hash: '', size: 0, mode: 0o644, mtimeMs: 0, ino, uid: 0, gid: 0, baseHash: null };
}

/** Layer-allocated inode numbers live above the workspace's (ext4's stay far below 2^31). */
const FIRST_INO = 0x80000000;
const INO_BLOCK = 4096;

/**
 * The core's front door: one workspace, its store, its agents. Everything
 * the daemon does to agents goes through here; the FUSE adapters only see
 * an agent's AgentTree through the TreeOps contract.
 */
export class Overlay {
  readonly registry: Registry;
  readonly log: EventLog;
  readonly blobs: BlobStore;
  readonly workspace: Workspace;
  readonly settings: SettingsStore;
  private readonly trees = new Map<string, AgentTree>();
  private nextIno: number;
  private inoLimit: number;

  private constructor(readonly store: Store, workspace: Workspace) {
    this.workspace = workspace;
    this.registry = new Registry(store);
    this.log = new EventLog(store);
    this.blobs = new BlobStore(store);
    this.settings = new SettingsStore(store);
    this.nextIno = this.inoLimit = store.dbs.meta.get('inoLimit') ?? FIRST_INO;
  }

  static async open(opts: OverlayOptions): Promise<Overlay> {
    const root = path.resolve(opts.workspace);
    const workspace = new Workspace(root);
    const stateDir = path.resolve(opts.stateDir ?? path.join(root, '.cowfs'));
    workspace.hide(stateDir);
    const overlay = new Overlay(await Store.open(stateDir), workspace);
    overlay.recover();
    return overlay;
  }

  get stateDir(): string {
    return this.store.stateDir;
  }

  // ---- agents --------------------------------------------------------------

  /** A new agent over the live workspace (parent null) or over another agent's head: O(1), nothing copied. */
  createAgent(name: string, parent: string | null): AgentRecord {
    this.registry.checkNew(name, parent);
    const base = parent === null ? null : this.registry.get(parent).head;
    const head = this.registry.allocCommitId();
    let agent!: AgentRecord;
    this.atomically(() => {
      // A name used before starts a new life: the removed agent's working layer must not show through.
      if (this.registry.record(name)) this.dropWorkingLayer(name);
      const ev = this.log.append(name, { type: 'AGENT_CREATED', parent, base, head });
      this.registry.saveCommit({ id: head, agent: name, base, prev: null, message: '', seq: ev.seq, time: ev.time }, new Layer());
      agent = {
        name, parent, base, head, state: 'active', createdSeq: ev.seq, createdAt: ev.time, mountpoint: null,
      };
      this.registry.saveAgent(agent);
    });
    return agent;
  }

  /** Deletes the stored working layer of a name (inside the caller's transaction). */
  dropWorkingLayer(name: string): void {
    for (const key of this.store.dbs.layers.getKeys({ start: [name, ''], end: [name, '\uffff'] })) this.store.dbs.layers.removeSync(key);
  }

  agent(name: string): AgentRecord {
    return this.registry.get(name);
  }

  agents(): AgentRecord[] {
    return this.registry.agents();
  }

  /**
   * Logs what every agent's open files hold now (puts), so an answer read
   * from the log or the layers includes writes whose close the FUSE adapter
   * was not told of (libfuse 3: files are opened without OPEN/RELEASE).
   */
  settleAll(onError: (agent: string, err: unknown) => void, only?: string): void {
    for (const [name, tree] of this.trees) {
      if (only !== undefined && name !== only) continue;
      // One agent's failure (a full disk) must not stop the others, nor the request (gc frees space).
      try {
        tree.settle();
      } catch (err) {
        onError(name, err);
      }
    }
  }

  /** The agent's working tree (what its mount shows). */
  tree(name: string): AgentTree {
    let tree = this.trees.get(name);
    if (!tree) {
      const a = this.registry.get(name);
      const entries: [string, Entry][] = [];
      for (const { key, value } of this.store.dbs.layers.getRange({ start: [name, ''], end: [name, '\uffff'] })) {
        entries.push([key[1], value]);
      }
      tree = new AgentTree(name, new Layer(entries), this.registry.chainOf(a.base), this.services());
      this.trees.set(name, tree);
    }
    return tree;
  }

  /** The tree of a commit (what children based on it see); null: the workspace on disk. */
  commitView(commit: number | null): TreeView {
    return new TreeView(this.registry.chainOf(commit), this.workspace);
  }

  /** Snapshots the agent's working tree as its new head. */
  commit(name: string, message: string): CommitRecord {
    const a = this.registry.get(name);
    const tree = this.tree(name);
    tree.settle();
    const prev = this.registry.commit(a.head);
    const ops: LayerOp[] = [];
    for (const ev of this.log.byAgent(name, Infinity, prev.seq + 1)) if (isLayerOp(ev)) ops.push(ev);
    const id = this.registry.allocCommitId();
    const layer = tree.layer.clone();
    const changes = toRecorded(this.registry.commitLayer(a.head).diff(layer));
    let commit!: CommitRecord;
    this.atomically(() => {
      const ev = this.log.append(name, { type: 'AGENT_COMMIT_CREATED', commit: id, message, base: a.base, ops, changes });
      commit = { id, agent: name, base: a.base, prev: a.head, message, seq: ev.seq, time: ev.time };
      this.registry.saveCommit(commit, layer);
      this.registry.saveAgent({ ...a, head: id });
    });
    return commit;
  }

  /**
   * Moves an agent onto another base commit of its parent (a cascade
   * rebase): the working layer's and the head's changes are applied and a
   * new head commit is made, with one AGENT_REBASED event, atomically.
   */
  applyRebase(name: string, r: {
    base: number | null;
    changes: LayerChange[];
    headChanges: LayerChange[];
    merged: string[];
    refined: AgentRebased['refined'];
    conflicts: ConflictRecord[];
    /** The new head commit's message (default: what it was rebased onto). */
    message?: string;
    /** More writes for the same transaction (a landing's end), after the rebase's. */
    also?: () => void;
  }): AgentRecord {
    const a = this.registry.get(name);
    const tree = this.tree(name);
    const headLayer = this.registry.commitLayer(a.head).clone();
    headLayer.applyChanges(r.headChanges);
    const id = this.registry.allocCommitId();
    const conflicts = { ...a.conflicts };
    for (const c of r.conflicts) conflicts[c.path] = c;
    const next: AgentRecord = { ...a, base: r.base, head: id, conflicts };
    this.atomically(() => {
      tree.applyChanges(r.changes);
      const ev = this.log.append(name, {
        type: 'AGENT_REBASED', from: a.base, base: r.base, changes: toRecorded(r.changes), head: id,
        headChanges: toRecorded(r.headChanges), merged: r.merged, refined: r.refined, conflicts: r.conflicts.map((c) => c.path),
      });
      const message = r.message ?? (r.base === null ? 'rebased onto the workspace on disk' : `rebased onto commit ${r.base}`);
      this.registry.saveCommit({ id, agent: name, base: r.base, prev: a.head, message, seq: ev.seq, time: ev.time }, headLayer);
      this.registry.saveAgent(next);
      if (r.conflicts.length > 0) {
        this.log.append(name, { type: 'WORKTREE_CONFLICT_DETECTED', paths: r.conflicts.map((c) => c.path), conflicts: r.conflicts });
      }
      r.also?.();
    }, () => tree.setChain(this.registry.chainOf(r.base)));
    return next;
  }

  /**
   * Writes the chosen resolution of a conflicted path into the working tree
   * and the head, and marks it resolved.
   */
  resolveConflict(name: string, path: string, chosen: Resolution, how: 'ours' | 'theirs' | 'file'): void {
    const tree = this.tree(name);
    const a = this.registry.get(name);
    const changes: LayerChange[] = chosen === 'below'
      ? [...tree.layer.entriesList()].filter(([p]) => p === path || p.startsWith(`${path}/`)).map(([p]) => [p, undefined])
      : [[path, this.resolvedEntry(tree.layer.get(path), chosen)]];
    // The resolution goes into the working tree and the head alike: a rebase onto the same base.
    this.applyRebase(name, {
      base: a.base, changes, headChanges: changes, merged: [], refined: [], conflicts: [], message: `resolve ${path}`,
    });
    this.markResolved(name, path, how);
  }

  private resolvedEntry(cur: Entry | undefined, chosen: Exclude<Resolution, 'below'>): Entry {
    if (chosen === 'deleted') return { kind: 'whiteout' };
    const [ino, uid, gid] = cur && cur.kind !== 'whiteout' ? [cur.ino, cur.uid, cur.gid] : [this.allocIno(), 0, 0];
    if ('target' in chosen) return { kind: 'symlink', target: chosen.target, mtimeMs: Date.now(), ino, uid, gid };
    const file = cur?.kind === 'file' ? cur : { ...newFileDefaults(ino), uid, gid };
    return {
      ...file, hash: this.blobs.put(chosen.content), size: chosen.content.length,
      mode: chosen.mode ?? file.mode, mtimeMs: Date.now(),
    };
  }

  markResolved(name: string, path: string, how: 'ours' | 'theirs' | 'file' | 'commit'): void {
    const a = this.registry.get(name);
    const conflicts = { ...a.conflicts };
    delete conflicts[path];
    this.atomically(() => {
      this.log.append(name, { type: 'WORKTREE_CONFLICT_RESOLVED', path, how });
      this.registry.saveAgent({ ...a, conflicts });
    });
  }

  /**
   * Puts the agent's working tree back to what it was at event `to`
   * (default: before its last operation) with new, ordinary layer events
   * and an AGENT_UNDONE after them, so the undo can itself be undone.
   */
  undo(name: string, to?: number): { to: number; ops: number; seq: number | null } {
    const tree = this.tree(name);
    tree.settle();
    const target = undoTarget(this.log, name, to);
    const ops = opsBetween(tree.layer, this.replay(name, target).layers[0]!);
    if (ops.length === 0) return { to: target, ops: 0, seq: null };
    const before = this.log.head;
    let seq = 0;
    this.atomically(() => {
      tree.applyOps(ops);
      seq = this.log.append(name, { type: 'AGENT_UNDONE', to: target, before, ops: ops.length }).seq;
    });
    return { to: target, ops: ops.length, seq };
  }

  /** Logs a lifecycle event that changes no layer (WORKTREE_CHANGED…), with `also` in the same transaction. */
  record(name: string, body: EventBody, also?: () => void): CowEvent {
    let ev!: CowEvent;
    this.atomically(() => {
      ev = this.log.append(name, body);
      also?.();
    });
    return ev;
  }

  /**
   * A commit of `name` made of given operations (a child's work landing in
   * it): applied to its working tree as ordinary layer events and to a new
   * head, with one AGENT_COMMIT_CREATED; `also` runs in the same transaction.
   */
  commitOps(name: string, ops: readonly LayerOp[], message: string, also?: (commit: CommitRecord) => void): CommitRecord {
    const a = this.registry.get(name);
    const tree = this.tree(name);
    const prevLayer = this.registry.commitLayer(a.head);
    const layer = prevLayer.clone();
    for (const op of ops) layer.apply(op);
    const id = this.registry.allocCommitId();
    let commit!: CommitRecord;
    this.atomically(() => {
      tree.applyOps(ops);
      const changes = toRecorded(prevLayer.diff(layer));
      const ev = this.log.append(name, { type: 'AGENT_COMMIT_CREATED', commit: id, message, base: a.base, ops: [...ops], changes });
      commit = { id, agent: name, base: a.base, prev: a.head, message, seq: ev.seq, time: ev.time };
      this.registry.saveCommit(commit, layer);
      this.registry.saveAgent({ ...a, head: id });
      also?.(commit);
    });
    return commit;
  }

  /** Removes an agent (and, with `recursive`, its descendants); refuses while it has children otherwise. */
  removeAgent(name: string, recursive = false): string[] {
    this.registry.get(name);
    const kids = this.registry.children(name);
    if (kids.length > 0 && !recursive) {
      throw new OverlayError(`agent ${name} has children (${kids.map((k) => k.name).join(', ')}); remove them first or use --recursive`);
    }
    const removed = kids.flatMap((k) => this.removeAgent(k.name, true));
    this.atomically(() => {
      this.log.append(name, { type: 'AGENT_REMOVED' });
      this.registry.saveAgent({ ...this.registry.get(name), state: 'removed', mountpoint: null });
    });
    this.trees.delete(name);
    return [...removed, name];
  }

  setMountpoint(name: string, mountpoint: string | null): void {
    this.registry.saveAgent({ ...this.registry.get(name), mountpoint });
  }

  /** Files the agent changed and the bytes its own files take. */
  usage(name: string): { changed: number; bytes: number } {
    let changed = 0;
    let bytes = 0;
    for (const [, e] of this.tree(name).layer.entriesList()) {
      if (e.kind === 'dir') continue;
      changed++;
      if (e.kind === 'file') bytes += e.size;
    }
    return { changed, bytes };
  }

  /** Blobs that files open in any agent's tree use (a gc root). */
  openBlobs(out: Set<string>): void {
    for (const tree of this.trees.values()) tree.openBlobs(out);
  }

  /** The agent's tree as it was at event `to`, rebuilt from the log alone. */
  replay(name: string, to = Infinity): TreeView {
    return replayView(this.log, this.workspace, name, to);
  }

  async close(): Promise<void> {
    this.trees.clear();
    await this.store.close();
  }

  // ---- internals -------------------------------------------------------------

  /**
   * Runs `fn` as one store transaction; subscribers hear of its events only once it committed,
   * and after `committed` (what follows the commit in memory: they must find the tree as the events left it).
   */
  atomically(fn: () => void, committed?: () => void): void {
    try {
      this.store.txn(fn);
    } catch (err) {
      this.log.discardPending();
      for (const tree of this.trees.values()) tree.endChange(false);
      throw err;
    }
    committed?.();
    for (const tree of this.trees.values()) tree.endChange(true);
    this.log.publish();
  }

  private services() {
    return {
      store: this.store,
      blobs: this.blobs,
      log: this.log,
      workspace: this.workspace,
      allocIno: () => this.allocIno(),
    };
  }

  allocIno(): number {
    if (this.nextIno >= this.inoLimit) {
      this.inoLimit = this.nextIno + INO_BLOCK;
      this.store.dbs.meta.putSync('inoLimit', this.inoLimit);
    }
    return this.nextIno++;
  }

  /**
   * After a crash: files that were being written live on in their scratch
   * files (the page cache survives the process); ingest them, so nothing
   * written before the crash is lost.
   */
  private recover(): void {
    const known = new Set<string>();
    for (const { key, value } of this.store.dbs.dirty.getRange()) {
      const rec = value as DirtyRecord;
      const file = path.join(this.store.scratchDir, key);
      known.add(key);
      if (fs.existsSync(file) && this.registry.find(rec.agent)) this.tree(rec.agent).recover(rec.path, file, rec);
      this.store.dbs.dirty.removeSync(key);
      fs.rmSync(file, { force: true });
    }
    for (const name of fs.readdirSync(this.store.scratchDir)) {
      if (!known.has(name)) fs.rmSync(path.join(this.store.scratchDir, name), { force: true });
    }
  }
}
