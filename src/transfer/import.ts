import fs from 'node:fs';
import path from 'node:path';
import type { ConflictRecord, CowEvent, EventBody } from '../events/types.js';
import type { Entry } from '../overlay/entry.js';
import type { Layer } from '../overlay/layer.js';
import type { Overlay } from '../overlay/overlay.js';
import { eventBlobs } from '../overlay/references.js';
import { OverlayError } from '../overlay/registry.js';
import { AgentReplay } from '../overlay/replay.js';
import { blobSize, INLINE_MAX, type BlobId } from '../store/blobs.js';
import { createHash64, hash64 } from '../store/hash.js';
import { BundleError, BundleReader } from './bundle-format.js';
import { differingPaths, gitHeadOf } from './fingerprint.js';
import type { BundleManifest, LineageAgent } from './manifest.js';
import { Pacer, type ProgressFn } from './progress.js';

export interface ImportOptions {
  /** The imported agent's name here (default: its name in the bundle). */
  as?: string;
  /** Graft it onto this existing agent instead of bringing its ancestors. */
  parent?: string;
  /** Import although the workspace differs from the sender's where the lineage changed it. */
  force?: boolean;
}

export interface ImportResult {
  agent: string;
  /** Agents created, root first. */
  created: string[];
  events: number;
  received: number;
  receivedBytes: number;
  /** Blobs the lineage names that were already here. */
  alreadyHere: number;
  bytes: number;
  warnings: string[];
  ms: number;
}

/** A blob read from the bundle and checked against its id, waiting for the import's transaction. */
type Staged = { bytes: Buffer } | { file: string };

/**
 * Imports a bundle, all or nothing: the whole file is read and checked
 * first (its checksum, every blob against its id, every named blob present
 * here or in the bundle), large blobs staged under temporary names; then
 * the agents, commits, layers, events and blobs are written in one store
 * transaction. The lineage is appended to this log as new events (new
 * sequence numbers, commit ids and inode numbers), so replay, cascade and
 * gc treat imported agents like any other.
 */
export async function importBundle(ov: Overlay, file: string, opts: ImportOptions, progress?: ProgressFn): Promise<ImportResult> {
  const started = Date.now();
  const staging = fs.mkdtempSync(path.join(ov.stateDir, 'import-'));
  try {
    const { manifest, staged, bytes } = await readBundle(file, staging, progress);
    const warnings: string[] = [];
    // What the events name, not only what the manifest lists: a bundle that forgets a blob imports nothing.
    const named = new Set(manifest.blobs);
    for (const a of manifest.lineage) for (const ev of a.events) eventBlobs(ev, named);
    const missing = [...named].filter((id) => !staged.has(id) && !ov.blobs.has(id));
    if (missing.length > 0) {
      throw new BundleError(`the bundle leaves out ${missing.length} blobs this store does not hold (was --have given a manifest of another store?), e.g. ${missing[0]}`);
    }
    const plan = planImport(ov, manifest, opts, warnings);
    let events = 0;
    ov.atomically(() => {
      for (const [id, src] of staged) if (!ov.blobs.has(id)) ov.blobs.adopt(id, src);
      events = writePlan(ov, plan);
    });
    ov.store.syncToDisk();
    const receivedBytes = [...staged.keys()].reduce((n, id) => n + blobSize(id), 0);
    return {
      agent: plan.at(-1)!.name, created: plan.map((a) => a.name), events,
      received: staged.size, receivedBytes, alreadyHere: manifest.blobs.length - staged.size,
      bytes, warnings, ms: Date.now() - started,
    };
  } finally {
    fs.rmSync(staging, { recursive: true, force: true });
  }
}

/** Reads and checks the whole bundle; nothing reaches the store here. */
async function readBundle(file: string, staging: string, progress?: ProgressFn): Promise<{
  manifest: BundleManifest; staged: Map<BlobId, Staged>; bytes: number;
}> {
  const r = new BundleReader(file);
  const pacer = new Pacer(progress);
  try {
    const first = r.next();
    if (first.type !== 'manifest') throw new BundleError(`${file} is corrupt: it does not start with its manifest`);
    const manifest = checkManifest(first.json, file);
    const named = new Set(manifest.blobs);
    const staged = new Map<BlobId, Staged>();
    for (;;) {
      const frame = r.next();
      if (frame.type === 'end') break;
      if (frame.type === 'manifest') throw new BundleError(`${file} is corrupt: a second manifest`);
      const { id, size } = frame;
      if (!named.has(id) || staged.has(id) || blobSize(id) !== size) {
        throw new BundleError(`${file} is corrupt: blob ${JSON.stringify(id.slice(0, 80))} is unexpected or of the wrong size`);
      }
      staged.set(id, size <= INLINE_MAX ? { bytes: readSmall(r, id) } : { file: stageLarge(r, id, staging) });
      await pacer.step({ phase: 'reading blobs', done: staged.size, total: manifest.included, bytes: r.pos });
    }
    if (staged.size !== manifest.included) throw new BundleError(`${file} is corrupt: it holds ${staged.size} blobs, its manifest says ${manifest.included}`);
    pacer.final({ phase: 'checked', done: staged.size, total: manifest.included, bytes: r.pos });
    return { manifest, staged, bytes: r.size };
  } finally {
    r.close();
  }
}

function checkId(id: BlobId, hash: string): void {
  if (id.split(':')[0] !== hash) throw new BundleError(`blob ${id} in the bundle does not match its hash: the bundle is corrupt`);
}

function readSmall(r: BundleReader, id: BlobId): Buffer {
  const bytes = r.blobChunk(INLINE_MAX);
  checkId(id, hash64(bytes));
  return bytes;
}

function stageLarge(r: BundleReader, id: BlobId, staging: string): string {
  const dest = path.join(staging, id.replace(/:/g, '-'));
  const fd = fs.openSync(dest, 'w', 0o600);
  const h = createHash64();
  try {
    for (let chunk = r.blobChunk(); chunk.length > 0; chunk = r.blobChunk()) {
      h.update(chunk);
      fs.writeSync(fd, chunk);
    }
  } finally {
    fs.closeSync(fd);
  }
  checkId(id, h.digest());
  return dest;
}

function checkManifest(json: unknown, file: string): BundleManifest {
  const m = json as BundleManifest;
  const ok = m && typeof m.agent === 'string' && Array.isArray(m.lineage) && m.lineage.length > 0
    && m.lineage.every((a) => typeof a?.name === 'string' && Array.isArray(a.events) && a.events[0]?.type === 'AGENT_CREATED')
    && Array.isArray(m.blobs) && m.blobs.every((b) => typeof b === 'string')
    && typeof m.included === 'number' && m.workspace && typeof m.workspace.paths === 'object';
  if (!ok) throw new BundleError(`${file} is corrupt: its manifest is incomplete`);
  return m;
}

/** One agent to create: its events as this log will hold them, its commits, its final layer. */
interface AgentPlan {
  name: string;
  parent: string | null;
  /** `seq`: the event's number in the sender's log. */
  steps: { seq: number; body: EventBody; commit?: { id: number; base: number | null; prev: number | null; message: string; layer: Layer } }[];
  layer: Layer;
  base: number | null;
  head: number;
  conflicts: Record<string, ConflictRecord>;
}

/**
 * Checks names, parent and workspace, and rebuilds every agent's layers and
 * commits in memory (so a malformed event fails here, before anything is
 * written).
 */
function planImport(ov: Overlay, m: BundleManifest, opts: ImportOptions, warnings: string[]): AgentPlan[] {
  const leafName = opts.as ?? m.agent;
  const graft = opts.parent;
  const lineage = graft === undefined ? m.lineage : m.lineage.slice(-1);
  if (graft !== undefined) ov.agent(graft);
  else {
    const differ = differingPaths(m.workspace, ov.workspace);
    if (differ.length > 0) {
      const list = differ.slice(0, 10).join(', ') + (differ.length > 10 ? `, … (${differ.length} in all)` : '');
      const msg = `this workspace differs from the sender's where the agent's lineage changed it: ${list}`;
      if (!opts.force) throw new OverlayError(`${msg}; bring it to the sender's state${m.workspace.git ? ` (git commit ${m.workspace.git})` : ''}, graft onto an agent with --parent, or import anyway with --force`);
      warnings.push(msg);
    }
    const here = gitHeadOf(ov.workspace);
    if (m.workspace.git && here && here !== m.workspace.git) {
      warnings.push(`the sender's workspace was at git commit ${m.workspace.git}, this one is at ${here} (the paths the agent changed agree)`);
    }
  }
  const commitMap = new Map<number, number>();
  const inoMap = new Map<number, number>();
  const mapIno = (ino: number) => {
    let n = inoMap.get(ino);
    if (n === undefined) inoMap.set(ino, (n = ov.allocIno()));
    return n;
  };
  const plans: AgentPlan[] = [];
  lineage.forEach((a, i) => {
    const leaf = i === lineage.length - 1;
    const name = leaf ? leafName : a.name;
    const parent = leaf && graft !== undefined ? graft : i === 0 ? null : plans[i - 1]!.name;
    if (ov.registry.find(name)) {
      throw new OverlayError(`agent ${name} already exists here: ${leaf
        ? 'import it under another name with --as NAME'
        : `it is an ancestor in the bundle; to put the agent on it (or on another agent) use --parent ${name}`}`);
    }
    ov.registry.checkNew(name, leaf && graft !== undefined ? graft : null);
    const graftHead = leaf && graft !== undefined ? ov.agent(graft).head : undefined;
    const mapBase = (id: number | null): number | null => {
      if (graftHead !== undefined) return graftHead;
      if (id === null) return null;
      const n = commitMap.get(id);
      if (n === undefined) throw new BundleError(`the bundle's events name commit ${id}, which it does not carry`);
      return n;
    };
    plans.push(planAgent(ov, a, name, parent, mapBase, commitMap, mapIno));
  });
  if (new Set(plans.map((p) => p.name)).size !== plans.length) throw new OverlayError(`the agent names of the bundle's lineage repeat (${plans.map((p) => p.name).join(', ')}); choose another --as`);
  return plans;
}

function planAgent(
  ov: Overlay, a: LineageAgent, name: string, parent: string | null,
  mapBase: (id: number | null) => number | null, commitMap: Map<number, number>, mapIno: (ino: number) => number,
): AgentPlan {
  const replay = new AgentReplay();
  const plan: AgentPlan = { name, parent, steps: [], layer: replay.work, base: null, head: -1, conflicts: {} };
  const newCommit = (old: number) => {
    const id = ov.registry.allocCommitId();
    commitMap.set(old, id);
    return id;
  };
  for (const ev of a.events) {
    const body = withInos(eventBody(ev), mapIno);
    // First the ids this log gives: commits and bases renumbered, the parent renamed.
    let message = '';
    switch (body.type) {
      case 'AGENT_CREATED':
        body.parent = parent;
        body.base = mapBase(body.base);
        body.head = newCommit(body.head);
        break;
      case 'AGENT_COMMIT_CREATED':
        body.commit = newCommit(body.commit);
        body.base = mapBase(body.base);
        message = body.message;
        break;
      case 'AGENT_REBASED':
        body.head = newCommit(body.head);
        body.from = mapBase(body.from);
        body.base = mapBase(body.base);
        message = body.base === null ? 'rebased onto the workspace on disk' : `rebased onto commit ${body.base}`;
        break;
      case 'WORKTREE_CHANGED':
        if (parent !== null) body.parent = parent;
        body.from = mapBase(body.from);
        body.to = mapBase(body.to) ?? body.to;
        break;
      case 'WORKTREE_CONFLICT_DETECTED':
        for (const c of body.conflicts) {
          c.from = mapBase(c.from);
          c.to = mapBase(c.to);
          plan.conflicts[c.path] = c;
        }
        break;
      case 'WORKTREE_CONFLICT_RESOLVED':
        delete plan.conflicts[body.path];
        break;
      case 'AGENT_LANDED':
        // The landed commit is one of this agent's own (mapped above); the parent's, when it came along, too.
        body.commit = commitMap.get(body.commit) ?? body.commit;
        if (body.parentCommit !== null) body.parentCommit = commitMap.get(body.parentCommit) ?? body.parentCommit;
        break;
      case 'AGENT_UNDONE':
        break; // its event numbers are renumbered when written (writePlan)
      case 'AGENT_REMOVED':
        throw new BundleError(`the bundle's agent ${a.name} was removed: nothing to import`);
    }
    // Then its effect on the layers, as replay reads it.
    let made: number | undefined;
    try {
      made = replay.apply(body);
    } catch (err) {
      throw new BundleError(`the bundle's events of ${a.name} do not replay: ${(err as Error).message}`);
    }
    let commit: AgentPlan['steps'][number]['commit'];
    if (made !== undefined) {
      // Each commit keeps its own copy of the head's layer, as the registry stores it.
      commit = { id: made, base: replay.base, prev: body.type === 'AGENT_CREATED' ? null : plan.head, message, layer: replay.head.clone() };
      plan.head = made;
      plan.base = replay.base;
    }
    plan.steps.push({ seq: ev.seq, body, commit });
  }
  plan.layer = replay.work; // a new layer since the AGENT_CREATED
  return plan;
}

/** Appends the planned events and saves commits, layers and agent records (inside the import's transaction). */
function writePlan(ov: Overlay, plans: readonly AgentPlan[]): number {
  let n = 0;
  for (const p of plans) {
    let createdSeq = 0;
    let createdAt = 0;
    const renumbered: [number, number][] = [];
    for (const { seq, body, commit } of p.steps) {
      if (body.type === 'AGENT_UNDONE') {
        body.to = renumber(renumbered, body.to);
        body.before = renumber(renumbered, body.before);
      }
      const ev = ov.log.append(p.name, body);
      renumbered.push([seq, ev.seq]);
      n++;
      if (body.type === 'AGENT_CREATED') ({ seq: createdSeq, time: createdAt } = ev);
      if (commit) {
        ov.registry.saveCommit({
          id: commit.id, agent: p.name, base: commit.base, prev: commit.prev, message: commit.message, seq: ev.seq, time: ev.time,
        }, commit.layer);
      }
    }
    for (const [q, e] of p.layer.entriesList()) ov.store.dbs.layers.putSync([p.name, q], e);
    ov.registry.saveAgent({
      name: p.name, parent: p.parent, base: p.base, head: p.head, state: 'active',
      createdSeq, createdAt, mountpoint: null, conflicts: p.conflicts,
    });
  }
  return n;
}

/**
 * An event number of the sender's log, here: the number of the last event of
 * this agent imported at or before it (the agent's tree was the same then).
 */
function renumber(renumbered: readonly [number, number][], seq: number): number {
  let here = 0;
  for (const [there, n] of renumbered) if (there <= seq) here = n;
  return here;
}

/** An event as the sender's log held it, without what this log assigns anew. */
function eventBody(ev: CowEvent): EventBody {
  const { seq: _seq, agent: _agent, time: _time, ...body } = structuredClone(ev);
  return body as EventBody;
}

/** Gives every entry the event carries a new inode number here (the same for the same number there). */
function withInos<T>(value: T, mapIno: (ino: number) => number): T {
  if (Array.isArray(value)) {
    for (const v of value) withInos(v, mapIno);
  } else if (value && typeof value === 'object') {
    const e = value as Partial<Entry> & Record<string, unknown>;
    if ((e.kind === 'file' || e.kind === 'dir' || e.kind === 'symlink') && typeof e.ino === 'number') e.ino = mapIno(e.ino);
    for (const v of Object.values(e)) withInos(v, mapIno);
  }
  return value;
}
