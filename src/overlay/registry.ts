import type { ConflictRecord } from '../events/types.js';
import type { Store } from '../store/env.js';
import type { Entry } from './entry.js';
import { Layer } from './layer.js';
import { checkAgentName } from './paths.js';

export type AgentState = 'active' | 'removed';

export interface AgentRecord {
  name: string;
  /** Another agent, or null for the live workspace. */
  parent: string | null;
  /** The parent's commit this agent's tree is based on (null: the live workspace). */
  base: number | null;
  /** The agent's latest commit: an immutable snapshot its children are based on. */
  head: number;
  state: AgentState;
  createdSeq: number;
  createdAt: number;
  /** Where the daemon mounts it (kept so a restart remounts it). */
  mountpoint: string | null;
  /** Unresolved merge conflicts by path; while any remain the cascade stops here. */
  conflicts?: Record<string, ConflictRecord>;
}

export interface CommitRecord {
  id: number;
  agent: string;
  /** The commit below this one (the parent agent's head it is based on); null: the workspace. */
  base: number | null;
  /** The agent's previous commit. */
  prev: number | null;
  message: string;
  seq: number;
  time: number;
}

/** A clear, user-facing refusal (bad name, missing parent, cycle…). */
export class OverlayError extends Error {
  override name = 'OverlayError';
}

/** Agents and commits as stored, with frozen commit layers loaded on demand. */
export class Registry {
  private readonly agentCache = new Map<string, AgentRecord>();
  private readonly layerCache = new Map<number, Layer>();
  private nextCommit: number;

  constructor(private readonly store: Store) {
    for (const { value } of store.dbs.agents.getRange()) this.agentCache.set(value.name, value);
    const [last] = store.dbs.commits.getKeys({ reverse: true, limit: 1 });
    this.nextCommit = (last ?? 0) + 1;
  }

  agents(): AgentRecord[] {
    return [...this.agentCache.values()].filter((a) => a.state !== 'removed');
  }

  find(name: string): AgentRecord | undefined {
    const a = this.agentCache.get(name);
    return a && a.state !== 'removed' ? a : undefined;
  }

  /** The stored record of a name, removed or not. */
  record(name: string): AgentRecord | undefined {
    return this.agentCache.get(name);
  }

  get(name: string): AgentRecord {
    const a = this.find(name);
    if (!a) throw new OverlayError(`no agent named ${JSON.stringify(name)} (see \`cowfs ls\`)`);
    return a;
  }

  children(name: string): AgentRecord[] {
    return this.agents().filter((a) => a.parent === name);
  }

  /** Checks a new agent's name and parent; refuses duplicates, missing parents and cycles. */
  checkNew(name: string, parent: string | null): void {
    checkAgentName(name);
    if (this.find(name)) throw new OverlayError(`agent ${name} already exists`);
    if (parent === null) return;
    if (parent === name) throw new OverlayError(`agent ${name} cannot be its own parent`);
    this.get(parent);
    // A new agent has no children, so a cycle can only come from a corrupt store.
    const seen = new Set([name]);
    for (let p: string | null = parent; p !== null; p = this.get(p).parent) {
      if (seen.has(p)) throw new OverlayError(`agent parents form a cycle through ${p}`);
      seen.add(p);
    }
  }

  saveAgent(a: AgentRecord): void {
    this.agentCache.set(a.name, a);
    this.store.dbs.agents.putSync(a.name, a);
  }

  /** Deletes a removed agent's record (gc, once it is old enough); its events stay in the log. */
  forget(name: string): void {
    if (this.agentCache.get(name)?.state !== 'removed') throw new OverlayError(`agent ${name} is not removed`);
    this.agentCache.delete(name);
    this.store.dbs.agents.removeSync(name);
  }

  /** Deletes commits of removed agents and their frozen layers (gc). */
  forgetCommits(ids: readonly number[]): void {
    for (const id of ids) {
      for (const key of this.store.dbs.commitEntries.getKeys({ start: [id, ''], end: [id + 1, ''] })) this.store.dbs.commitEntries.removeSync(key);
      this.store.dbs.commits.removeSync(id);
      this.layerCache.delete(id);
    }
  }

  allocCommitId(): number {
    return this.nextCommit++;
  }

  /** Stores a commit and its frozen layer (a copy of the working layer at that moment). */
  saveCommit(c: CommitRecord, layer: Layer): void {
    this.store.dbs.commits.putSync(c.id, c);
    for (const [p, e] of layer.entriesList()) this.store.dbs.commitEntries.putSync([c.id, p], e);
    this.layerCache.set(c.id, layer);
  }

  commit(id: number): CommitRecord {
    const c = this.store.dbs.commits.get(id) as CommitRecord | undefined;
    if (!c) throw new OverlayError(`no commit ${id}`);
    return c;
  }

  commitLayer(id: number): Layer {
    let layer = this.layerCache.get(id);
    if (!layer) {
      const entries: [string, Entry][] = [];
      for (const { key, value } of this.store.dbs.commitEntries.getRange({ start: [id, ''], end: [id + 1, ''] })) {
        entries.push([key[1], value]);
      }
      layer = new Layer(entries);
      this.layerCache.set(id, layer);
    }
    return layer;
  }

  /** The frozen layers of a commit and of every commit below it, top first. */
  chainOf(commit: number | null): Layer[] {
    const out: Layer[] = [];
    for (let c = commit; c !== null; c = this.commit(c).base) out.push(this.commitLayer(c));
    return out;
  }
}
