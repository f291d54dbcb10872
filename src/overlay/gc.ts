import fs from 'node:fs';
import path from 'node:path';
import type { BlobId } from '../store/blobs.js';
import { blobSize } from '../store/blobs.js';
import { Pacer, type ProgressFn } from '../transfer/progress.js';
import type { DirtyRecord } from './agent-tree.js';
import type { Entry } from './entry.js';
import type { Overlay } from './overlay.js';
import { conflictBlobs, entryBlobs, eventBlobs } from './references.js';
import type { AgentRecord, CommitRecord } from './registry.js';

export interface GcOptions {
  dryRun: boolean;
  /** Agents removed longer ago than this are dropped. */
  keepRemovedMs: number;
}

export interface GcResult {
  dryRun: boolean;
  /** Blobs held before, and those deleted (or that would be, with dryRun). */
  blobs: number;
  freedBlobs: number;
  freedBytes: number;
  /** Files under blobs/ no record named (left by a crash), deleted. */
  strayFiles: number;
  strayBytes: number;
  droppedAgents: string[];
  /** Blobs stored or reused while gc ran: kept whatever the mark said. */
  keptNew: number;
  ms: number;
}

/** One life of an agent name: from its AGENT_CREATED to its AGENT_REMOVED (a name can be reused after removal). */
interface Life {
  name: string;
  createdSeq: number;
  removedAt: number | null;
  blobs: Set<BlobId>;
}

const SWEEP_CHUNK = 2000;

/**
 * Mark and sweep of the blob store, safe while agents write. Roots: every
 * blob an event of a live (or recently removed) agent names — the log
 * holds every layer, head and commit such an agent ever had, and it only
 * grows, so a blob marked stays needed and one unmarked never becomes
 * needed again except by being stored anew — plus working layers, commit
 * layers, conflicts, files being written (the dirty records) and files open
 * in any tree. Blobs stored or found again by a dedup hit while gc runs are
 * recorded by the blob store's watch and never deleted. Each sweep chunk
 * checks and deletes in one synchronous step (no write can slip between),
 * and deletes records before files: killed at any point, the store stays
 * consistent and the next gc removes the files it left.
 */
export async function collectGarbage(ov: Overlay, opts: GcOptions, progress?: ProgressFn): Promise<GcResult> {
  const started = Date.now();
  const pacer = new Pacer(progress);
  const fresh = ov.blobs.watch();
  try {
    const lives = new Lives(await scanLog(ov, pacer), Date.now() - opts.keepRemovedMs, ov);
    const { marked, drop } = await mark(ov, lives, pacer);
    if (!opts.dryRun) {
      // Agents first: a gc killed after this and before the sweep only leaves garbage for the next one.
      ov.atomically(() => {
        for (const name of drop.layers) ov.dropWorkingLayer(name);
        ov.registry.forgetCommits([...drop.commits]);
        for (const name of drop.agents) ov.registry.forget(name);
      });
    }
    const swept = await sweep(ov, (id) => !marked.has(id) && !fresh.has(id), opts.dryRun, pacer);
    const strays = sweepStrays(ov, opts.dryRun);
    return {
      dryRun: opts.dryRun, ...swept, ...strays, droppedAgents: [...drop.agents].sort(), keptNew: fresh.size, ms: Date.now() - started,
    };
  } finally {
    ov.blobs.unwatch(fresh);
  }
}

/** Every agent life, which of them are dropped, and what the agent records say now. */
class Lives {
  private readonly byName = new Map<string, Life[]>();
  private readonly droppedKeys: Set<string>;

  constructor(readonly all: Life[], cutoff: number, private readonly ov: Overlay) {
    for (const l of all) this.byName.set(l.name, [...(this.byName.get(l.name) ?? []), l]);
    this.droppedKeys = new Set(all.filter((l) => l.removedAt !== null && l.removedAt <= cutoff).map(lifeKey));
  }

  dropped(l: Life): boolean {
    return this.droppedKeys.has(lifeKey(l));
  }

  /** Is the agent record of `name` the record of a dropped life? */
  currentDropped(name: string): boolean {
    const rec = this.ov.registry.record(name);
    const life = rec && this.byName.get(name)?.find((l) => l.createdSeq === rec.createdSeq);
    return life !== undefined && this.dropped(life);
  }

  /** Was the life of `name` that event `seq` belongs to dropped? */
  droppedAt(name: string, seq: number): boolean {
    const life = this.byName.get(name)?.filter((l) => l.createdSeq <= seq).at(-1);
    return life !== undefined && this.dropped(life);
  }
}

/** The roots' blobs, and the records of dropped agents. */
async function mark(ov: Overlay, lives: Lives, pacer: Pacer): Promise<{
  marked: Set<BlobId>; drop: { layers: Set<string>; commits: Set<number>; agents: Set<string> };
}> {
  const marked = new Set<BlobId>();
  const drop = { layers: new Set<string>(), commits: new Set<number>(), agents: new Set<string>() };
  for (const l of lives.all) if (!lives.dropped(l)) for (const id of l.blobs) marked.add(id);
  const droppedName = new Map<string, boolean>();
  const isDropped = (name: string) => {
    let d = droppedName.get(name);
    if (d === undefined) droppedName.set(name, (d = lives.currentDropped(name)));
    return d;
  };
  // Working layers and conflicts of the agents kept.
  for (const { key, value } of ov.store.dbs.layers.getRange()) {
    if (isDropped(key[0])) drop.layers.add(key[0]);
    else entryBlobs(value as Entry, marked);
  }
  for (const { key, value } of ov.store.dbs.agents.getRange()) {
    if (isDropped(key)) drop.agents.add(key);
    else for (const c of Object.values((value as AgentRecord).conflicts ?? {})) conflictBlobs(c, marked);
  }
  // Commit layers, except those of dropped agents.
  for (const { value } of ov.store.dbs.commits.getRange()) {
    const c = value as CommitRecord;
    if (lives.droppedAt(c.agent, c.seq)) drop.commits.add(c.id);
  }
  let n = 0;
  for (const { key, value } of ov.store.dbs.commitEntries.getRange()) {
    if (!drop.commits.has(key[0])) entryBlobs(value as Entry, marked);
    if (++n % 5000 === 0) await pacer.step({ phase: 'marking commits', done: n });
  }
  // Files being written, and files open.
  for (const { value } of ov.store.dbs.dirty.getRange()) {
    const base = (value as DirtyRecord).meta.baseHash;
    if (base) marked.add(base);
  }
  ov.openBlobs(marked);
  return { marked, drop };
}

/**
 * Deletes the blobs `doomed` picks, in chunks: each chunk is checked and
 * its records deleted in one synchronous step, so no write slips between.
 */
async function sweep(ov: Overlay, doomed: (id: BlobId) => boolean, dryRun: boolean, pacer: Pacer): Promise<{
  blobs: number; freedBlobs: number; freedBytes: number;
}> {
  const all = [...ov.blobs.ids()];
  // Announced before it starts; writers get a turn between mark and sweep.
  await pacer.phase({ phase: 'sweeping', done: 0, total: all.length });
  let freedBlobs = 0;
  let freedBytes = 0;
  for (let i = 0; i < all.length; i += SWEEP_CHUNK) {
    const ids = all.slice(i, i + SWEEP_CHUNK).filter(doomed);
    freedBlobs += ids.length;
    freedBytes += ids.reduce((n, id) => n + blobSize(id), 0);
    if (!dryRun && ids.length > 0) {
      let files: string[] = [];
      ov.store.txn(() => { files = ov.blobs.removeRecords(ids); });
      for (const f of files) fs.rmSync(f, { force: true });
    }
    await pacer.step({ phase: 'sweeping', done: Math.min(i + SWEEP_CHUNK, all.length), total: all.length, bytes: freedBytes });
  }
  pacer.final({ phase: 'swept', done: all.length, total: all.length, bytes: freedBytes });
  return { blobs: all.length, freedBlobs, freedBytes };
}

/** Blob files without records and import staging directories: what a killed gc or import left. */
function sweepStrays(ov: Overlay, dryRun: boolean): { strayFiles: number; strayBytes: number } {
  let strayFiles = 0;
  let strayBytes = 0;
  for (const { file, size } of ov.blobs.orphanFiles()) {
    strayFiles++;
    strayBytes += size;
    if (!dryRun) fs.rmSync(file, { force: true });
  }
  // gc and import never run at once (the daemon runs one at a time), so any staging directory is a leftover.
  for (const name of fs.readdirSync(ov.stateDir)) {
    if (name.startsWith('import-') && !dryRun) fs.rmSync(path.join(ov.stateDir, name), { recursive: true, force: true });
  }
  return { strayFiles, strayBytes };
}

/** One pass over the log: every agent life and the blobs its events name. */
async function scanLog(ov: Overlay, pacer: Pacer): Promise<Life[]> {
  const lives: Life[] = [];
  const latest = new Map<string, Life>();
  let n = 0;
  for (const ev of ov.log.range()) {
    let life = latest.get(ev.agent);
    if (ev.type === 'AGENT_CREATED' || !life) {
      life = { name: ev.agent, createdSeq: ev.type === 'AGENT_CREATED' ? ev.seq : 0, removedAt: null, blobs: new Set() };
      lives.push(life);
      latest.set(ev.agent, life);
    }
    if (ev.type === 'AGENT_REMOVED') life.removedAt = ev.time;
    eventBlobs(ev, life.blobs);
    if (++n % 1000 === 0) await pacer.step({ phase: 'marking', done: n, total: ov.log.head });
  }
  return lives;
}

function lifeKey(l: { name: string; createdSeq: number }): string {
  return `${l.createdSeq}:${l.name}`;
}
