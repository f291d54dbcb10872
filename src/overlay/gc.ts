import fs from 'node:fs';
import path from 'node:path';
import type { BlobId } from '../store/blobs.js';
import { blobSize } from '../store/blobs.js';
import { Pacer, type ProgressFn } from '../transfer/progress.js';
import type { DirtyRecord } from './agent-tree.js';
import type { Entry } from './entry.js';
import type { Overlay } from './overlay.js';
import { conflictBlobs, entryBlobs, eventBlobs } from './references.js';
import type { CommitRecord } from './registry.js';

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
    const cutoff = Date.now() - opts.keepRemovedMs;
    const lives = await scanLog(ov, pacer);
    const dropped = lives.filter((l) => l.removedAt !== null && l.removedAt <= cutoff);
    const droppedKey = new Set(dropped.map(lifeKey));
    const current = (name: string) => {
      const rec = ov.registry.record(name);
      return rec && lives.find((l) => l.name === name && l.createdSeq === rec.createdSeq);
    };
    const isDropped = (name: string, seq: number) => droppedKey.has(lifeKey(lifeAt(lives, name, seq) ?? { name, createdSeq: 0 }));

    const marked = new Set<BlobId>();
    for (const l of lives) if (!droppedKey.has(lifeKey(l))) for (const id of l.blobs) marked.add(id);
    // Working layers and conflicts of the agents kept.
    const dropLayers: string[] = [];
    for (const { key, value } of ov.store.dbs.layers.getRange()) {
      const life = current(key[0]);
      if (life && droppedKey.has(lifeKey(life))) dropLayers.push(key[0]);
      else entryBlobs(value as Entry, marked);
    }
    for (const { value } of ov.store.dbs.agents.getRange()) for (const c of Object.values(value.conflicts ?? {})) conflictBlobs(c as never, marked);
    // Commit layers, except those of dropped agents.
    const dropCommits = new Set<number>();
    for (const { value } of ov.store.dbs.commits.getRange()) {
      const c = value as CommitRecord;
      if (isDropped(c.agent, c.seq)) dropCommits.add(c.id);
    }
    for (const { key, value } of ov.store.dbs.commitEntries.getRange()) if (!dropCommits.has(key[0])) entryBlobs(value as Entry, marked);
    // Files being written and files open.
    for (const { value } of ov.store.dbs.dirty.getRange()) {
      const base = (value as DirtyRecord).meta.baseHash;
      if (base) marked.add(base);
    }
    ov.openBlobs(marked);

    const droppedNames = [...new Set(dropped.map((l) => l.name))].filter((n) => {
      const life = current(n);
      return life !== undefined && droppedKey.has(lifeKey(life));
    });
    if (!opts.dryRun) {
      // Agents first: a gc killed after this and before the sweep only leaves garbage for the next one.
      ov.atomically(() => {
        for (const name of new Set(dropLayers)) {
          for (const key of ov.store.dbs.layers.getKeys({ start: [name, ''], end: [name, '\uffff'] })) ov.store.dbs.layers.removeSync(key);
        }
        ov.registry.forgetCommits([...dropCommits]);
        for (const name of droppedNames) ov.registry.forget(name);
      });
    }

    const all = [...ov.blobs.ids()];
    // Each phase is announced before it starts, and writers get a turn between mark and sweep.
    await pacer.phase({ phase: 'sweeping', done: 0, total: all.length });
    let freedBlobs = 0;
    let freedBytes = 0;
    for (let i = 0; i < all.length; i += SWEEP_CHUNK) {
      const doomed = all.slice(i, i + SWEEP_CHUNK).filter((id) => !marked.has(id) && !fresh.has(id));
      freedBlobs += doomed.length;
      freedBytes += doomed.reduce((n, id) => n + blobSize(id), 0);
      if (!opts.dryRun && doomed.length > 0) {
        let files: string[] = [];
        ov.store.txn(() => { files = ov.blobs.removeRecords(doomed); });
        for (const f of files) fs.rmSync(f, { force: true });
      }
      await pacer.step({ phase: 'sweeping', done: Math.min(i + SWEEP_CHUNK, all.length), total: all.length, bytes: freedBytes });
    }

    let strayFiles = 0;
    let strayBytes = 0;
    for (const { file, size } of ov.blobs.orphanFiles()) {
      strayFiles++;
      strayBytes += size;
      if (!opts.dryRun) fs.rmSync(file, { force: true });
    }
    // Staging directories of imports killed before they finished (gc and import never run at once).
    for (const name of fs.readdirSync(ov.stateDir)) {
      if (name.startsWith('import-') && !opts.dryRun) fs.rmSync(path.join(ov.stateDir, name), { recursive: true, force: true });
    }
    pacer.final({ phase: 'done', done: all.length, total: all.length, bytes: freedBytes });
    return {
      dryRun: opts.dryRun, blobs: all.length, freedBlobs, freedBytes, strayFiles, strayBytes,
      droppedAgents: droppedNames.sort(), keptNew: fresh.size, ms: Date.now() - started,
    };
  } finally {
    ov.blobs.unwatch(fresh);
  }
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

/** The life of `name` that event `seq` belongs to. */
function lifeAt(lives: readonly Life[], name: string, seq: number): Life | undefined {
  let found: Life | undefined;
  for (const l of lives) if (l.name === name && l.createdSeq <= seq) found = l;
  return found;
}
