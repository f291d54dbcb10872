import type { ConflictRecord, RefinedHunkRecord } from '../events/types.js';
import { mergeFiles, type FileMerge } from '../merge/index.js';
import type { BlobStore } from '../store/blobs.js';
import type { DirEntry, Entry, FileEntry } from '../overlay/entry.js';
import { Layer, type LayerChange } from '../overlay/layer.js';
import { contentOf, modeOf, targetOf, walk } from '../overlay/materialize.js';
import { isWithin, join, parentOf, reroot } from '../overlay/paths.js';
import { changedPaths, type PathChange } from '../overlay/tree-diff.js';
import { attrOf, kindOf, TreeView, type Resolved } from '../overlay/view.js';

/** What one layer becomes on the new base. */
export interface RebasePlan {
  changes: LayerChange[];
  merged: string[];
  refined: { path: string; hunks: RefinedHunkRecord[] }[];
  conflicts: ConflictRecord[];
}

export interface RebaseContext {
  /** The parent's tree at the commit the agent was based on, and at the new one. */
  before: TreeView;
  after: TreeView;
  from: number | null;
  to: number | null;
  blobs: BlobStore;
  /** Conflict-marker labels: the agent, and the parent commits. */
  labels: { ours: string; base: string; theirs: string };
  refine: boolean;
  /** The inode number of a directory the rebase keeps whose own is unknown (keepDirectories): one per path. */
  dirIno: (p: string) => number;
  /**
   * Merges already made in this rebase, by the three versions: an agent's
   * working layer and its head mostly hold the same files, merged once.
   */
  merges?: Map<string, FileMerge>;
}

/**
 * Whether two trees hold the same thing at a path, and a merge's cache key. Not layer-ops'
 * `sameEntry`, which compares layer entries field for field (mtime, inode, merge base) and has
 * no workspace files; not `fingerprintOf` either, which stores a workspace file to hash it: this
 * one is cheap (a workspace file by its stat), at the price that equal content in two different
 * files reads as different — fine for skipping the paths the parent did not change.
 */
function identity(r: Resolved | undefined): string {
  if (!r) return '-';
  if (r.src === 'disk') return `disk:${r.node.realPath}:${r.node.stat.mtimeMs}:${r.node.stat.size}`;
  const e = r.entry;
  return e.kind === 'file' ? `blob:${e.hash}:${e.mode}` : e.kind === 'symlink' ? `link:${e.target}` : 'dir';
}

/** Where a layer's path lies below it, following the layer's redirects; null if the layer hides it. */
export function lowerPath(layer: Layer, p: string): string | null {
  const r = layer.probeAbove(p);
  if (!r) return p;
  return r.entry.kind === 'dir' && r.entry.redirect !== null ? reroot(p, r.at, r.entry.redirect) : null;
}

/**
 * Rebases one layer (an agent's working layer or its head's) from `before`
 * to `after`, per path, as DESIGN.md says: a path the agent changed that
 * the parent also changed is merged three ways (base = before, ours = the
 * layer, theirs = after); everything else the agent never touched simply
 * shows the new tree, because the layer sits on it.
 */
export function planRebase(layer: Layer, ctx: RebaseContext): RebasePlan {
  const plan: RebasePlan = { changes: [], merged: [], refined: [], conflicts: [] };
  mergeLayer(layer, ctx, plan);
  keepDirectories(layer, ctx, plan);
  return plan;
}

/** `planRebase` up to the directories it keeps: each path of the layer where `before` and `after` differ. */
function mergeLayer(layer: Layer, ctx: RebaseContext, plan: RebasePlan): void {
  // Deleted directories the parent changed in are unfolded first: what the agent made in one it
  // made again (opaque) then meets the parent's tree below, and merges as any other path.
  const unfolded = unfoldDeletedDirectories(layer, ctx, plan);
  for (const [p, ours] of layer.entriesList()) {
    const q = lowerPath(unfolded, p);
    if (q === null) continue;
    const base = ctx.before.lookup(q);
    const theirs = ctx.after.lookup(q);
    // A directory merges through its entries, unless it took the place of a file or symlink the parent changed, or the parent made one there.
    if (ours.kind === 'dir' && (!base || kindOf(base) === 'dir') && (!theirs || kindOf(theirs) === 'dir')) continue;
    if (ours.kind === 'dir' && base && theirs && kindOf(theirs) === 'dir') {
      bothMadeDirectory(p, unfolded, plan);
      continue;
    }
    // A deleted directory: unfolded above, or nothing to unfold.
    if (ours.kind === 'whiteout' && base && theirs && kindOf(base) === 'dir' && kindOf(theirs) === 'dir') continue;
    if (identity(base) === identity(theirs)) continue;
    mergePath(p, ours, base, theirs, ctx, plan);
  }
}

/**
 * The agent and the parent both made a directory where a file or link was: as git merges it, the
 * two directories' entries merge (what each made inside shows beside the other's), not a `type`
 * conflict. The agent's directory, made where something was, is opaque: it would hide the parent's
 * entries, and the parent's own directory hides the old file already.
 */
function bothMadeDirectory(p: string, layer: Layer, plan: RebasePlan): void {
  const own = layer.get(p);
  if (own?.kind === 'dir' && own.opaque) plan.changes.push([p, { ...own, opaque: false }]);
}

/**
 * `unfoldDeletedDirectory` for each directory the layer deleted: a whiteout, or a directory made
 * again there (opaque: `rm -rf d; mkdir d`), where the parent still has one. Returns the layer as
 * it is then (itself when nothing unfolded).
 */
function unfoldDeletedDirectories(layer: Layer, ctx: RebaseContext, plan: RebasePlan): Layer {
  const moved = movedAway(layer);
  const mayDiffer = parentMayDiffer(ctx);
  for (const [p, ours] of layer.entriesList()) {
    const deleted = ours.kind === 'whiteout' || (ours.kind === 'dir' && ours.opaque);
    const q = deleted ? lowerPath(layer, p) : null;
    if (q === null || !mayDiffer(q)) continue;
    const theirs = ctx.after.lookup(q);
    if (!theirs || kindOf(theirs) !== 'dir') continue;
    const base = ctx.before.lookup(q);
    // A whiteout stands for a directory that was there; a directory made again may stand for one gone since.
    if (base ? kindOf(base) === 'dir' : ours.kind === 'dir') unfoldDeletedDirectory(layer, p, q, moved, ctx, plan);
  }
  if (plan.changes.length === 0) return layer;
  const next = layer.clone();
  next.applyChanges(plan.changes);
  return next;
}

/**
 * Whether the parent's two trees can differ at or below `q`: only under an entry of a layer one of
 * them has and the other not, or below such an entry that hides or moves what lies under it. After
 * an unfold every directory the parent left as it was is a deleted one, and walking the parent's
 * change for each of them (changedPaths) at every later commit cost seconds of the daemon's thread
 * with thousands of them (review).
 */
function parentMayDiffer(ctx: RebaseContext): (q: string) => boolean {
  let index: { under: Set<string>; hiding: Set<string> } | undefined;
  // Built at the first deleted directory: most layers have none, and every child is rebased at every commit.
  const build = () => {
    const under = new Set<string>();
    const hiding = new Set<string>();
    const shared = new Set(ctx.before.layers.filter((l) => ctx.after.layers.includes(l)));
    for (const l of new Set([...ctx.before.layers, ...ctx.after.layers])) {
      if (shared.has(l)) continue;
      for (const [p, e] of l.entriesList()) {
        if (e.kind !== 'dir' || e.opaque || e.redirect !== null) hiding.add(p);
        for (let d = p; d !== '' && !under.has(d); d = parentOf(d)) under.add(d);
      }
    }
    return { under, hiding };
  };
  return (q) => {
    const { under, hiding } = (index ??= build());
    if (under.has(q)) return true;
    for (let d = parentOf(q); d !== ''; d = parentOf(d)) if (hiding.has(d)) return true;
    return false;
  };
}

/** Where the layer's moved (renamed) directories come from below: the parent's changes there show where they went. */
function movedAway(layer: Layer): string[] {
  const out: string[] = [];
  for (const [, e] of layer.entriesList()) if (e.kind === 'dir' && e.redirect !== null) out.push(e.redirect);
  return out;
}

/**
 * The agent deleted directory `p` (at `q` below), which the parent still has: by a whiteout, or by
 * making it again (opaque, maybe with names of its own). As git sees it, the agent deleted the
 * files it saw there, not those the parent adds later. When the parent changed anything in it
 * (outside what the agent moved away, which shows the change where it went), the whiteout goes
 * or the directory stops being opaque, and each name the parent left as it was is hidden again:
 * by a whiteout, or by the agent's own entry when it made the name again (a directory becomes
 * opaque; a file or link it made merges in `planRebase`). What the parent added shows; a file it
 * edited meets the deletion in `mergePath` (a delete-modify conflict); a directory it changed
 * inside unfolds the same way, deleted or made again.
 */
function unfoldDeletedDirectory(layer: Layer, p: string, q: string, moved: readonly string[], ctx: RebaseContext, plan: RebasePlan): void {
  // Left out: changes in what the agent moved away from inside `q` (not a move of `q` or above it),
  // and a directory's mode alone (git keeps no directories: a chmod brought back an empty one).
  const changed = changedPaths(ctx.before, ctx.after, ctx.blobs, [q])
    .filter((c) => c.path !== q && !moved.some((m) => isWithin(m, q) && isWithin(c.path, m)) && !bothDirectories(c.before, c.after));
  if (changed.length === 0) return;
  for (const c of changed) movedFromDeleted(layer, reroot(c.path, q, p), c, q, moved, ctx, plan);
  const reached = new Set<string>();
  for (const c of changed) for (let d = c.path; d !== '' && !reached.has(d); d = parentOf(d)) reached.add(d);
  const touched = (below: string) => reached.has(below);
  const unfold = (dir: string, below: string, own: Entry | undefined) => {
    if (own?.kind === 'whiteout') plan.changes.push([dir, undefined]);
    else if (own?.kind === 'dir' && own.opaque) plan.changes.push([dir, { ...own, opaque: false }]);
    for (const name of ctx.before.list(below)?.keys() ?? []) {
      const [sub, subBelow] = [join(dir, name), join(below, name)];
      const base = ctx.before.lookup(subBelow);
      const theirs = ctx.after.lookup(subBelow);
      const bothDirs = bothDirectories(base, theirs);
      const mine = own?.kind === 'dir' ? layer.get(sub) : undefined;
      if (mine && mine.kind !== 'whiteout') {
        // Made again: a file or link merges as the agent's change; a moved-in directory hides by its redirect.
        if (mine.kind !== 'dir' || mine.redirect !== null) continue;
        if (bothDirs && touched(subBelow)) unfold(sub, subBelow, mine);
        // It hid what lay below through the opaque directory above it: now it hides that itself,
        // unless the parent made a directory there too where a file was (`bothMadeDirectory`).
        else {
          const hides = theirs !== undefined && !(kindOf(base!) !== 'dir' && kindOf(theirs) === 'dir');
          if (mine.opaque !== hides) plan.changes.push([sub, { ...mine, opaque: hides }]);
        }
      } else if (!touched(subBelow)) plan.changes.push([sub, { kind: 'whiteout' }]);
      else if (bothDirs) unfold(sub, subBelow, mine);
      else mergePath(sub, { kind: 'whiteout' }, base, theirs, ctx, plan);
    }
  };
  unfold(p, q, layer.get(p));
}

/** A directory on both sides (whatever their modes: git keeps no directories, only their files). */
function bothDirectories(x: Resolved | undefined, y: Resolved | undefined): boolean {
  return x !== undefined && y !== undefined && kindOf(x) === 'dir' && kindOf(y) === 'dir';
}

/**
 * A directory the parent moved (a redirect it made, at `c`) from inside directory `q` the agent
 * deleted, which the unfold lets through at the agent's path `p`: as git reports it, each file the
 * agent saw there and deleted is a rename/delete conflict, kept in the tree as the parent moved it
 * (as a delete-modify conflict keeps the modified side). Before, the files came back silently.
 * Not for what the agent moved away itself (both moved it: left to the redirects), nor where the
 * agent made the name itself (`mergeLayer` merges its entry with the parent's file). The source
 * must be a directory of the parent's old tree, the one the agent saw: a redirect of a lower layer
 * met below the moved one (or a move of what the parent had moved before) points elsewhere.
 */
function movedFromDeleted(
  layer: Layer, p: string, c: PathChange, q: string, moved: readonly string[], ctx: RebaseContext, plan: RebasePlan,
): void {
  const from = c.after?.src === 'layer' && c.after.entry.kind === 'dir' ? c.after.entry.redirect : null;
  if (from === null || !isWithin(from, q) || moved.some((m) => isWithin(from, m))) return;
  if (c.before?.src === 'layer' && c.before.entry.kind === 'dir' && c.before.entry.redirect === from) return;
  const was = ctx.before.lookup(from);
  if (!was || kindOf(was) !== 'dir') return;
  for (const [s, theirs] of walk(ctx.after, c.path)) {
    const base = ctx.before.lookup(reroot(s, c.path, from));
    const own = layer.get(reroot(s, c.path, p));
    if (!base || kindOf(base) === 'dir' || kindOf(theirs) === 'dir' || (own && own.kind !== 'whiteout')) continue;
    recordConflict(reroot(s, c.path, p), 'delete-modify', [base, undefined, theirs], undefined, ctx, plan);
  }
}

/**
 * A file the agent made or changed in a directory it inherited lives in its layer without the
 * directory itself. When the parent deletes that directory (or moves it away), the rebase gives
 * the layer the directory, as git keeps a directory while a file is in it: else the kept file would
 * be unreachable, in the layer but not in the tree. Not opaque: the whiteout or redirect below
 * hides the old content already, and if the directory comes back (a later commit restores it, a
 * `git checkout` back on disk) its files show again beside the agent's (opaque, they stayed
 * hidden, and landing the agent deleted them). The same when the workspace's directory is removed
 * on disk: then only entries below the `changed` paths are looked at, and the directory's own
 * attributes went with it (it gets the owner of the agent's entry below it).
 */
function keepDirectories(layer: Layer, ctx: RebaseContext, plan: RebasePlan, changed?: ReadonlySet<string>): void {
  const below = (p: string) => {
    for (let dir = parentOf(p); dir !== ''; dir = parentOf(dir)) if (changed!.has(dir)) return true;
    return false;
  };
  if (changed && ![...layer.entriesList()].some(([p]) => below(p))) return;
  const next = layer.clone();
  next.applyChanges(plan.changes);
  const tree = new TreeView([next, ...ctx.after.layers], ctx.after.workspace);
  const seen = new Set<string>();
  for (const [p, e] of next.entriesList()) {
    if (e.kind === 'whiteout') continue;
    for (let dir = parentOf(p); dir !== '' && !seen.has(dir); dir = parentOf(dir)) {
      seen.add(dir);
      const there = tree.lookup(dir);
      if (there && kindOf(there) === 'dir') break;
      const was = ctx.before.lookup(lowerPath(layer, dir) ?? dir);
      const attr = was ? attrOf(was) : undefined;
      const kept: DirEntry = {
        kind: 'dir', mode: attr ? attr.mode & 0o7777 : 0o755, mtimeMs: Date.now(), ino: attr?.ino ?? ctx.dirIno(dir),
        uid: attr?.uid ?? e.uid, gid: attr?.gid ?? e.gid, opaque: false, redirect: null,
      };
      plan.changes.push([dir, kept]);
      // The parent made it a file or a link: as git, a conflict (file/directory); ours stays until resolved.
      if (there) mergePath(dir, kept, was, there, ctx, plan);
    }
  }
}

/** `dirIno` for a rebase: a new number per path, the same for the agent's working layer and its head. */
export function inoPerPath(alloc: () => number): (p: string) => number {
  const inos = new Map<string, number>();
  return (p) => {
    let ino = inos.get(p);
    if (ino === undefined) inos.set(p, (ino = alloc()));
    return ino;
  };
}

export function mergePath(p: string, ours: Entry, base: Resolved | undefined, theirs: Resolved | undefined, ctx: RebaseContext, plan: RebasePlan): void {
  const mine: Resolved | undefined = ours.kind === 'whiteout' ? undefined : { src: 'layer', path: p, entry: ours };
  const sides = [base, mine, theirs];
  const conflict = (kind: ConflictRecord['kind'], keep: LayerChange | undefined, hunks: ConflictRecord['hunks'] = []) => {
    recordConflict(p, kind, sides, keep ? keep[1] : ours, ctx, plan, hunks);
    if (keep) plan.changes.push(keep);
  };
  // Deleted on both sides (a directory too): nothing to merge, and nothing left below to hide.
  if (!mine && !theirs) return void plan.changes.push([p, undefined]);
  if (sides.some((r) => r && kindOf(r) === 'dir')) return conflict('type', undefined);
  if (sides.some((r) => r && kindOf(r) === 'symlink')) {
    // A symlink is compared whole (its target), as is a file beside it: the
    // same on both sides, or one side unchanged, merges; else ours stays.
    const [b, o, t] = sides.map((r) => fingerprintOf(r, ctx));
    if (o === t || t === b) return;
    if (o === b) return void plan.changes.push([p, theirs ? undefined : { kind: 'whiteout' }]);
    return conflict(!mine || !theirs ? 'delete-modify' : kindOf(mine) === kindOf(theirs) ? 'symlink' : 'type', undefined);
  }
  const key = `${identity(base)} ${ours.kind === 'file' ? ours.hash : '-'} ${identity(theirs)}`;
  let m = ctx.merges?.get(key);
  if (!m) {
    m = mergeFiles(
      base ? contentOf(base, ctx.blobs) : null,
      ours.kind === 'file' ? ctx.blobs.get(ours.hash) : null,
      theirs ? contentOf(theirs, ctx.blobs) : null,
      { labels: ctx.labels, refine: ctx.refine },
    );
    ctx.merges?.set(key, m);
  }
  if (m.refined.length > 0) plan.refined.push({ path: p, hunks: m.refined });
  if (m.content === null) {
    // Deleted on one side, unchanged on the other: it is gone.
    plan.changes.push([p, theirs ? { kind: 'whiteout' } : undefined]);
    plan.merged.push(p);
    return;
  }
  const mode = mergeMode(fileMode(base), fileMode(mine), fileMode(theirs));
  const hash = ctx.blobs.put(m.content);
  const theirsFile = theirs && kindOf(theirs) === 'file' ? theirs : undefined;
  // A merge that equals the parent's new file is no longer a change of the agent's: let it show through.
  const showThrough = m.clean && theirsFile && blobOf(theirsFile, ctx) === hash && modeOf(theirsFile) === mode.mode;
  const entry: FileEntry | undefined = showThrough ? undefined : {
    kind: 'file', hash, size: m.content.length, mode: mode.mode, mtimeMs: Date.now(),
    ino: ours.kind === 'file' ? ours.ino : theirsFile ? attrIno(theirsFile) : 0,
    uid: ours.kind === 'file' ? ours.uid : 0, gid: ours.kind === 'file' ? ours.gid : 0,
    baseHash: blobOf(theirs, ctx),
  };
  if (!m.clean) {
    const kind = m.conflict?.kind ?? 'content';
    const hunks = m.hunks.map((h) => ({ line: h.line, ours: h.ours.text, base: h.base.text, theirs: h.theirs.text }));
    return conflict(kind, [p, entry], hunks);
  }
  if (mode.clash) return conflict('mode', [p, entry]);
  plan.changes.push([p, entry]);
  plan.merged.push(p);
}

/**
 * A conflict at `p` between the three versions (base, ours, theirs); `left`: what the agent's layer
 * holds there after the merge, which a commit must change to settle a conflict without markers.
 */
function recordConflict(
  p: string, kind: ConflictRecord['kind'], sides: (Resolved | undefined)[], left: Entry | undefined,
  ctx: RebaseContext, plan: RebasePlan, hunks: ConflictRecord['hunks'] = [],
): void {
  const [base, mine, theirs] = sides;
  const record: ConflictRecord = {
    path: p, kind, hunks, from: ctx.from, to: ctx.to,
    base: blobOf(base, ctx), ours: blobOf(mine, ctx), theirs: blobOf(theirs, ctx),
  };
  const of = <T>(f: (r: Resolved | undefined) => T) => ({ base: f(base), ours: f(mine), theirs: f(theirs) });
  if (sides.some((r) => r && kindOf(r) === 'file')) record.modes = of(fileMode);
  if (sides.some((r) => r && kindOf(r) === 'symlink')) record.targets = of((r) => (r && kindOf(r) === 'symlink' ? targetOf(r) : null));
  if (kind === 'type') record.kinds = of((r) => (r ? kindOf(r) : null));
  if (kind !== 'content') record.left = entryFingerprint(left);
  plan.conflicts.push(record);
}

/**
 * What a layer entry holds, as a string: equal strings, equal files (content and mode), links or
 * directories, whatever their mtime or inode (which `sameEntry` compares too). A string, because a
 * conflict record keeps it (`left`) to tell later whether the agent changed the path since.
 */
export function entryFingerprint(e: Entry | undefined): string {
  if (!e) return 'none';
  return e.kind === 'file' ? `file:${e.hash}:${e.mode}` : e.kind === 'symlink' ? `link:${e.target}` : e.kind;
}

/** `entryFingerprint` of what a path resolves to; a workspace file's content is stored for its blob id. */
function fingerprintOf(r: Resolved | undefined, ctx: RebaseContext): string {
  if (!r || r.src === 'layer') return entryFingerprint(r?.entry);
  const kind = kindOf(r);
  return kind === 'file' ? `file:${blobOf(r, ctx)}:${modeOf(r)}` : kind === 'symlink' ? `link:${targetOf(r)}` : kind;
}

/** A file's permission bits (null: absent or not a file). */
function fileMode(r: Resolved | undefined): number | null {
  return r && kindOf(r) === 'file' ? modeOf(r) : null;
}

/**
 * The permission bits, as git treats the executable bit: a side that
 * changed them wins; both changed differently (or added with different
 * modes) is a clash, and ours stays until resolved.
 */
function mergeMode(b: number | null, o: number | null, t: number | null): { mode: number; clash: boolean } {
  if (o === null) return { mode: t ?? 0o644, clash: false };
  if (t === null || o === t || t === b) return { mode: o, clash: false };
  if (o === b) return { mode: t, clash: false };
  return { mode: o, clash: true };
}

function attrIno(r: Resolved): number {
  return r.src === 'disk' ? r.node.stat.ino : r.entry.ino;
}

/** The blob of a resolved file, storing a workspace file's content so the conflict keeps it. */
function blobOf(r: Resolved | undefined, ctx: RebaseContext): string | null {
  if (!r || kindOf(r) !== 'file') return null;
  return r.src === 'layer' ? (r.entry as FileEntry).hash : ctx.blobs.putFile(r.node.realPath, 'copy');
}

/**
 * A layer against the workspace on disk, for the paths that changed there
 * (a human edit, a `git pull`): base = what the agent copied up
 * (`baseHash`), ours = the layer, theirs = the file on disk now. Only paths
 * whose tree below is the workspace itself are concerned; a path an
 * ancestor's commit holds is reached by that ancestor's cascade instead.
 * A directory the agent deleted (or made again) that `changed` reaches into
 * unfolds as in `planRebase`, against the workspace as it was when the agent
 * deleted it (`workspaceBefore`, from `deletedAt`: when the agent deleted a
 * path, from its log).
 */
export function planWorkspaceRebase(
  layer: Layer, below: TreeView, changed: ReadonlySet<string>, ctx: RebaseContext, deletedAt: (p: string) => number | undefined,
): RebasePlan {
  const plan: RebasePlan = { changes: [], merged: [], refined: [], conflicts: [] };
  // A directory the agent deleted that the workspace changed in since unfolds as after a parent's commit.
  const before = workspaceBefore(layer, below, changed, deletedAt, ctx.blobs);
  if (before) mergeLayer(layer, { ...ctx, before }, plan);
  for (const [p, ours] of layer.entriesList()) {
    if (ours.kind !== 'file' || ours.baseHash === null) continue;
    const q = lowerPath(layer, p);
    if (q === null || !changed.has(q)) continue;
    const now = below.lookup(q);
    if (now ? now.src !== 'disk' : below.layers.some((l) => l.probe(q))) continue;
    const base: Resolved = { src: 'layer', path: q, entry: { ...ours, hash: ours.baseHash } };
    if (now && kindOf(now) === 'file' && blobOf(now, ctx) === ours.baseHash) continue;
    mergePath(p, ours, base, now, ctx, plan);
  }
  keepDirectories(layer, ctx, plan, changed);
  return plan;
}

/**
 * The workspace as the agent saw it when it deleted its directories that `changed` reaches into
 * (a whiteout, or a directory made again: opaque), or null if none. A root agent keeps no copy
 * of what it deleted, so what was there is told by time, as landing tells it (`planLanding`): a
 * path on disk whose status changed (ctime) after the agent deleted it, or its directory, came
 * since if the agent never deleted that name (absent before), and was modified since if it did;
 * the rest it saw and deleted (the same before as now). A modified file's old content is unknown:
 * it stands as a note, which no file on disk holds, so it merges as a change (a delete-modify
 * conflict, the file on disk kept).
 */
function workspaceBefore(
  layer: Layer, below: TreeView, changed: ReadonlySet<string>, deletedAt: (p: string) => number | undefined, blobs: BlobStore,
): TreeView | null {
  const reached = new Set<string>();
  for (const c of changed) for (let p = c; p !== '' && !reached.has(p); p = parentOf(p)) reached.add(p);
  const past: [string, Entry][] = [];
  for (const [p, e] of layer.entriesList()) {
    const q = e.kind === 'whiteout' || (e.kind === 'dir' && e.opaque) ? lowerPath(layer, p) : null;
    const at = q !== null && reached.has(q) ? deletedAt(p) : undefined;
    if (at === undefined) continue;
    let came: string | null = null;
    for (const [s, r] of walk(below, q!)) {
      if (r.src !== 'disk' || (came !== null && isWithin(s, came))) continue;
      const own = deletedAt(reroot(s, q!, p));
      if (Math.floor(r.node.stat.ctimeMs) <= (own ?? at)) continue;
      if (own === undefined) past.push([(came = s), { kind: 'whiteout' }]);
      else if (r.node.kind !== 'dir') past.push([s, unknownContent(r, blobs)]);
    }
  }
  return past.length === 0 ? null : new TreeView([new Layer(past), ...below.layers], below.workspace);
}

const UNKNOWN = Buffer.from('(unknown: the workspace changed this path on disk after the agent deleted it; cowfs keeps no copy of what a root agent deletes)\n');

/** What a path the agent deleted held then, when the workspace changed it since: unknown, a note. */
function unknownContent(now: Resolved, blobs: BlobStore): FileEntry {
  return { kind: 'file', hash: blobs.put(UNKNOWN), size: UNKNOWN.length, mode: modeOf(now), mtimeMs: 0, ino: 0, uid: 0, gid: 0, baseHash: null };
}
