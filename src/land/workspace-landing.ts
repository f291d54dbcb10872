import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Cascade } from '../cascade/cascade.js';
import type { Overlay } from '../overlay/overlay.js';
import { OverlayError } from '../overlay/registry.js';
import { depth, parentOf } from '../overlay/paths.js';
import type { LandPlan } from './plan.js';
import { settleLanded } from './settle.js';

/**
 * A landing into the workspace, journaled in the store before anything is
 * written. `prepare`: the new files are being written under temporary
 * names in one directory; a crash then rolls back (the directory is
 * removed). `commit`: every temporary file is complete and on the disk
 * (fsynced, with its name, before the journal says so); a crash or a power
 * cut then rolls forward. Every step is idempotent, so a crash during
 * recovery is recovered the same way.
 */
interface Journal {
  agent: string;
  commit: number;
  phase: 'prepare' | 'commit';
  /** Where the temporary files are (inside the workspace, so a rename is atomic). */
  tmpDir: string;
  paths: string[];
  deletes: string[];
  /** Directories to remove when empty, deepest first. */
  rmdirs: string[];
  /** Directories to create, parents first. */
  mkdirs: [path: string, mode: number][];
  writes: { path: string; tmp: string }[];
}

const JOURNAL_KEY = 'landing';
/** Files written between two turns of the event loop, so the daemon keeps answering during a long landing. */
const BATCH = 100;

export interface WorkspaceLanding {
  written: number;
  deleted: number;
  recovered?: boolean;
}

/**
 * syncfs(2) of the file system holding `dir` (coreutils `sync --file-system`; Node has no syncfs):
 * every temporary file's bytes and name at once. Measured (bench/land.ts, 1,000 files): about as
 * fast as not syncing, where an fsync per file cost 0.75 ms each (+75%). Run as a child process,
 * so the daemon keeps serving its mounts meanwhile.
 */
async function syncFileSystem(dir: string): Promise<void> {
  await promisify(execFile)('sync', ['--file-system', dir]);
}

/** fsync(2) of a file or a directory (its entries) by path. */
function syncPath(p: string): void {
  const fd = fs.openSync(p, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** The plan as steps on disk, with the temporary files written (phase `prepare`). */
async function prepare(ov: Overlay, plan: LandPlan, onProgress?: (done: number, total: number) => void): Promise<Journal> {
  const ws = ov.workspace;
  const tmpDir = `.cowfs-landing-${process.pid}-${Date.now().toString(36)}`;
  const j: Journal = {
    agent: plan.agent, commit: plan.commit, phase: 'prepare', tmpDir, paths: plan.paths,
    deletes: [], rmdirs: [], mkdirs: [], writes: [],
  };
  const newDirs = new Map<string, number>();
  const needDir = (dir: string) => {
    for (let d = dir; d !== '' && !newDirs.has(d); d = parentOf(d)) {
      const st = fs.lstatSync(ws.realPath(d), { throwIfNoEntry: false });
      if (st?.isDirectory()) break;
      if (st) j.deletes.push(d); // a file in the way of a directory the agent made
      newDirs.set(d, 0o755);
    }
  };
  for (const item of plan.items) {
    const { theirs, result } = item;
    if (theirs && theirs.kind !== 'dir' && (result === null || result.kind === 'dir')) j.deletes.push(item.path);
    if (theirs?.kind === 'dir' && result?.kind !== 'dir') j.rmdirs.push(item.path);
    if (result?.kind === 'dir') {
      needDir(item.path);
      if (newDirs.has(item.path)) newDirs.set(item.path, result.mode);
    } else if (result) {
      needDir(parentOf(item.path));
      j.writes.push({ path: item.path, tmp: String(j.writes.length) });
    }
  }
  j.rmdirs.sort((x, y) => depth(y) - depth(x));
  j.mkdirs = [...newDirs].sort(([x], [y]) => depth(x) - depth(y));
  saveJournal(ov, j);
  const tmpAbs = ws.realPath(tmpDir);
  ws.hide(tmpAbs);
  fs.mkdirSync(tmpAbs);
  const results = new Map(plan.items.map((i) => [i.path, i.result]));
  for (let i = 0; i < j.writes.length; i++) {
    const w = j.writes[i]!;
    const r = results.get(w.path)!;
    const dest = path.join(tmpAbs, w.tmp);
    if (r.kind === 'symlink') fs.symlinkSync(r.target, dest);
    else if (r.kind === 'file') {
      if (r.blob) ov.blobs.copyTo(r.blob, dest);
      else fs.writeFileSync(dest, r.bytes);
      fs.chmodSync(dest, r.mode);
    }
    if (i % BATCH === BATCH - 1) {
      onProgress?.(i + 1, j.writes.length);
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
  await syncFileSystem(tmpAbs);
  return j;
}

function saveJournal(ov: Overlay, j: Journal): void {
  ov.store.txn(() => ov.store.dbs.meta.putSync(JOURNAL_KEY, j));
  // The commit point reaches the disk, after the temporary files it names (prepare fsynced them).
  if (j.phase === 'commit') ov.store.syncToDisk();
}

/** Puts every prepared file in place (idempotent: after a crash it is simply run again). */
function finish(ov: Overlay, j: Journal): WorkspaceLanding {
  const ws = ov.workspace;
  const ignore = (codes: string[], fn: () => void) => {
    try {
      fn();
    } catch (err) {
      if (!codes.includes((err as NodeJS.ErrnoException).code ?? '')) throw err;
    }
  };
  for (const p of j.deletes) ignore(['ENOENT'], () => fs.unlinkSync(ws.realPath(p)));
  for (const p of j.rmdirs) ignore(['ENOENT', 'ENOTEMPTY', 'ENOTDIR'], () => fs.rmdirSync(ws.realPath(p)));
  for (const [p, mode] of j.mkdirs) ignore(['EEXIST'], () => fs.mkdirSync(ws.realPath(p), { mode }));
  const tmpAbs = ws.realPath(j.tmpDir);
  let written = 0;
  for (const w of j.writes) {
    ignore(['ENOENT'], () => {
      fs.renameSync(path.join(tmpAbs, w.tmp), ws.realPath(w.path));
      written++;
    });
  }
  // The renames and removals reach the disk before the journal that would redo them goes: an fsync
  // of each directory they changed (a few; synchronous, so nothing slips in before the settle).
  const dirs = new Set([...j.writes.map((w) => w.path), ...j.deletes, ...j.rmdirs, ...j.mkdirs.map(([p]) => p)].map((p) => ws.realPath(parentOf(p))));
  for (const d of dirs) ignore(['ENOENT', 'ENOTDIR'], () => syncPath(d));
  fs.rmSync(tmpAbs, { recursive: true, force: true });
  ws.unhide(tmpAbs);
  return { written, deleted: j.deletes.length + j.rmdirs.length };
}

/**
 * The end of a landing, inside the transaction that settles the agent: AGENT_LANDED, and the
 * journal goes. One transaction, so a crash leaves either both undone (recovery settles once)
 * or both done (nothing to recover): never a settled agent whose landing is settled again.
 */
function ending(ov: Overlay, j: Journal, recovered: boolean): () => void {
  return () => {
    ov.log.append(j.agent, { type: 'AGENT_LANDED', into: null, commit: j.commit, parentCommit: null, paths: j.paths, recovered });
    ov.store.dbs.meta.removeSync(JOURNAL_KEY);
  };
}

/**
 * The agent's head moved while the landing's files were prepared (it committed, or a change on
 * disk rebased it): nothing was written, and a new plan may land it (land() plans again).
 */
export class HeadMovedError extends OverlayError {}

/** Writes a planned landing into the workspace: journal, temporary files, commit point, renames. */
export async function landIntoWorkspace(
  ov: Overlay, cascade: Cascade, plan: LandPlan, onProgress?: (done: number, total: number) => void,
): Promise<WorkspaceLanding> {
  if (ov.store.dbs.meta.get(JOURNAL_KEY)) throw new OverlayError('another landing into the workspace is in progress');
  let j: Journal;
  try {
    j = await prepare(ov, plan, onProgress);
    // prepare yields to the mounts: a commit of the agent meanwhile would be settled away unlanded.
    if (ov.agent(j.agent).head !== j.commit) {
      throw new HeadMovedError(`${j.agent} committed or was rebased while its landing was being prepared; nothing was written: run cowfs land ${j.agent} again`);
    }
  } catch (err) {
    // Nothing is in place yet: forget the temporary files, so the next landing can start.
    rollBack(ov);
    throw err;
  }
  j.phase = 'commit';
  saveJournal(ov, j);
  const r = finish(ov, j);
  settleLanded(ov, cascade, j.agent, j.paths, null, j.commit, ending(ov, j, false));
  return r;
}

/** Drops a landing still in `prepare`: its temporary files, then its journal. */
function rollBack(ov: Overlay): void {
  const j = ov.store.dbs.meta.get(JOURNAL_KEY) as Journal | undefined;
  if (!j) return;
  const tmpAbs = ov.workspace.realPath(j.tmpDir);
  fs.rmSync(tmpAbs, { recursive: true, force: true });
  ov.workspace.unhide(tmpAbs);
  ov.store.txn(() => ov.store.dbs.meta.removeSync(JOURNAL_KEY));
}

/**
 * At daemon start: a landing a crash interrupted is rolled back if its
 * files were still being prepared, finished if they were all written.
 */
export function recoverLanding(ov: Overlay, cascade: Cascade): { agent: string; outcome: 'rolled back' | 'finished' } | undefined {
  const j = ov.store.dbs.meta.get(JOURNAL_KEY) as Journal | undefined;
  if (!j) return undefined;
  if (j.phase === 'prepare') {
    rollBack(ov);
    return { agent: j.agent, outcome: 'rolled back' };
  }
  finish(ov, j);
  if (ov.registry.find(j.agent)) settleLanded(ov, cascade, j.agent, j.paths, null, j.commit, ending(ov, j, true));
  else ov.atomically(ending(ov, j, true));
  return { agent: j.agent, outcome: 'finished' };
}
