import fs from 'node:fs';
import type { CowEvent } from '../events/types.js';
import type { Overlay } from '../overlay/overlay.js';
import { conflictBlobs, entryBlobs, eventBlobs } from '../overlay/references.js';
import type { AgentRecord } from '../overlay/registry.js';
import type { BlobId } from '../store/blobs.js';
import { blobSize } from '../store/blobs.js';
import { BundleWriter, FORMAT_VERSION, FRAME_MANIFEST } from './bundle-format.js';
import { fingerprint } from './fingerprint.js';
import type { BundleManifest, LineageAgent } from './manifest.js';
import { Pacer, type ProgressFn } from './progress.js';

export interface ExportResult {
  agent: string;
  out: string;
  /** Root first. */
  lineage: string[];
  events: number;
  /** Blobs the lineage names, those the bundle carries, and those left out because the receiver has them. */
  blobs: number;
  included: number;
  includedBytes: number;
  skipped: number;
  bytes: number;
  ms: number;
}

/**
 * Writes an agent's lineage into one bundle file (DESIGN.md, "Across
 * machines"): each ancestor's events up to the last of its commits its
 * child refers to, root first, then all of the agent's own events, and
 * every blob they name that `have` does not list. Written under a
 * temporary name and renamed, so a failed export leaves no partial bundle.
 */
export async function exportAgent(ov: Overlay, name: string, out: string, have: ReadonlySet<BlobId>, progress?: ProgressFn): Promise<ExportResult> {
  const started = Date.now();
  // What processes wrote and still hold open is part of the agent's tree.
  ov.tree(name).settle();
  const lineage = collectLineage(ov, name);
  const leaf = ov.agent(name);
  const needed = new Set<BlobId>();
  for (const a of lineage) for (const ev of a.events) eventBlobs(ev, needed);
  for (const [, e] of ov.tree(name).layer.entriesList()) entryBlobs(e, needed);
  for (const c of Object.values(leaf.conflicts ?? {})) conflictBlobs(c, needed);
  const blobs = [...needed].sort();
  const sent = blobs.filter((id) => !have.has(id));
  const manifest: BundleManifest = {
    format: FORMAT_VERSION,
    agent: name,
    createdAt: Date.now(),
    lineage,
    workspace: fingerprint(ov.workspace, [ov.tree(name).layer, ...ov.registry.chainOf(leaf.base)]),
    blobs,
    included: sent.length,
    includedBytes: sent.reduce((n, id) => n + blobSize(id), 0),
  };
  const part = `${out}.part-${process.pid}`;
  const w = new BundleWriter(part);
  const pacer = new Pacer(progress);
  try {
    w.frame(FRAME_MANIFEST, Buffer.from(JSON.stringify(manifest)));
    let done = 0;
    for (const id of sent) {
      const file = ov.blobs.fileOf(id);
      if (file) w.blobFromFile(id, file, blobSize(id));
      else w.blob(id, ov.blobs.get(id));
      await pacer.step({ phase: 'writing blobs', done: ++done, total: sent.length, bytes: w.bytes });
    }
    w.finish();
    fs.renameSync(part, out);
  } catch (err) {
    w.abort();
    throw err;
  }
  pacer.final({ phase: 'written', done: sent.length, total: sent.length, bytes: w.bytes });
  return {
    agent: name, out, lineage: lineage.map((a) => a.name), events: lineage.reduce((n, a) => n + a.events.length, 0),
    blobs: blobs.length, included: sent.length, includedBytes: manifest.includedBytes, skipped: blobs.length - sent.length,
    bytes: w.bytes, ms: Date.now() - started,
  };
}

/** The agent and its ancestors, root first, each with the events replay needs. */
function collectLineage(ov: Overlay, name: string): LineageAgent[] {
  const out: LineageAgent[] = [];
  let child: AgentRecord = ov.agent(name);
  let events = [...ov.log.byAgent(name, Infinity, child.createdSeq)];
  out.unshift({ name, parent: child.parent, events });
  while (child.parent !== null) {
    const parent = ov.agent(child.parent);
    const cut = Math.max(...parentCommitsNamed(events).map((id) => ov.registry.commit(id).seq));
    events = [...ov.log.byAgent(parent.name, cut, parent.createdSeq)];
    out.unshift({ name: parent.name, parent: parent.parent, events });
    child = parent;
  }
  return out;
}

/** Commits of the parent that a child's events name (its bases, rebases, notices and conflicts). */
export function parentCommitsNamed(events: readonly CowEvent[]): number[] {
  const ids: (number | null)[] = [];
  for (const ev of events) {
    if (ev.type === 'AGENT_CREATED') ids.push(ev.base);
    else if (ev.type === 'AGENT_REBASED') ids.push(ev.from, ev.base);
    else if (ev.type === 'WORKTREE_CHANGED') ids.push(ev.from, ev.to);
    else if (ev.type === 'WORKTREE_CONFLICT_DETECTED') for (const c of ev.conflicts) ids.push(c.from, c.to);
  }
  return ids.filter((id): id is number => id !== null);
}
