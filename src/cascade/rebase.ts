import type { ConflictRecord, RefinedHunkRecord } from '../events/types.js';
import { mergeFiles } from '../merge/index.js';
import type { BlobStore } from '../store/blobs.js';
import type { Entry, FileEntry } from '../overlay/entry.js';
import type { Layer, LayerChange } from '../overlay/layer.js';
import { contentOf, modeOf, targetOf } from '../overlay/materialize.js';
import { reroot } from '../overlay/paths.js';
import { kindOf, type Resolved, type TreeView } from '../overlay/view.js';

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
}

/** A stable identity of what a path holds: equal identities, equal content. */
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
  for (const [p, ours] of layer.entriesList()) {
    if (ours.kind === 'dir') continue; // a directory merges through its entries
    const q = lowerPath(layer, p);
    if (q === null) continue;
    const base = ctx.before.lookup(q);
    const theirs = ctx.after.lookup(q);
    if (identity(base) === identity(theirs)) continue;
    mergePath(p, ours, base, theirs, ctx, plan);
  }
  return plan;
}

export function mergePath(p: string, ours: Entry, base: Resolved | undefined, theirs: Resolved | undefined, ctx: RebaseContext, plan: RebasePlan): void {
  const kinds = [ours.kind === 'whiteout' ? undefined : ours.kind, base && kindOf(base), theirs && kindOf(theirs)];
  const conflict = (kind: ConflictRecord['kind'], keep: LayerChange | undefined, hunks: ConflictRecord['hunks'] = []) => {
    plan.conflicts.push({
      path: p, kind, hunks, from: ctx.from, to: ctx.to,
      base: blobOf(base, ctx), ours: ours.kind === 'file' ? ours.hash : null, theirs: blobOf(theirs, ctx),
    });
    if (keep) plan.changes.push(keep);
  };
  if (kinds.includes('dir')) return conflict('type', undefined);
  if (kinds.includes('symlink')) {
    // Targets are compared whole: same change on both sides, or one side unchanged, merges; else ours stays.
    const t = (r: Resolved | undefined) => (r ? targetOf(r) : null);
    const o = ours.kind === 'symlink' ? ours.target : null;
    if (o === t(theirs)) return;
    if (o === t(base)) return void plan.changes.push([p, theirs ? undefined : { kind: 'whiteout' }]);
    if (t(theirs) === t(base)) return;
    return conflict('content', undefined);
  }
  const m = mergeFiles(
    base ? contentOf(base, ctx.blobs) : null,
    ours.kind === 'file' ? ctx.blobs.get(ours.hash) : null,
    theirs ? contentOf(theirs, ctx.blobs) : null,
    { labels: ctx.labels, refine: ctx.refine },
  );
  if (m.refined.length > 0) plan.refined.push({ path: p, hunks: m.refined });
  if (m.content === null) {
    // Deleted on one side, unchanged on the other: it is gone.
    plan.changes.push([p, theirs ? { kind: 'whiteout' } : undefined]);
    plan.merged.push(p);
    return;
  }
  const mode = mergeMode(ours, base, theirs);
  const hash = ctx.blobs.put(m.content);
  const theirsFile = theirs && kindOf(theirs) === 'file' ? theirs : undefined;
  // A merge that equals the parent's new file is no longer a change of the agent's: let it show through.
  const showThrough = m.clean && theirsFile && blobOf(theirsFile, ctx) === hash && modeOf(theirsFile) === mode;
  const entry: FileEntry | undefined = showThrough ? undefined : {
    kind: 'file', hash, size: m.content.length, mode, mtimeMs: Date.now(),
    ino: ours.kind === 'file' ? ours.ino : theirsFile ? attrIno(theirsFile) : 0,
    uid: ours.kind === 'file' ? ours.uid : 0, gid: ours.kind === 'file' ? ours.gid : 0,
    baseHash: blobOf(theirs, ctx),
  };
  if (!m.clean) {
    const kind = m.conflict?.kind ?? 'content';
    const hunks = m.hunks.map((h) => ({ line: h.line, ours: h.ours.text, base: h.base.text, theirs: h.theirs.text }));
    return conflict(kind, [p, entry], hunks);
  }
  plan.changes.push([p, entry]);
  plan.merged.push(p);
}

/** git's rule for the executable bit: a side that changed it wins. */
function mergeMode(ours: Entry, base: Resolved | undefined, theirs: Resolved | undefined): number {
  const o = ours.kind === 'file' ? ours.mode : undefined;
  const b = base ? modeOf(base) : undefined;
  const t = theirs ? modeOf(theirs) : undefined;
  if (o === undefined) return t ?? 0o644;
  return o === b && t !== undefined ? t : o;
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
 */
export function planWorkspaceRebase(layer: Layer, below: TreeView, changed: ReadonlySet<string>, ctx: RebaseContext): RebasePlan {
  const plan: RebasePlan = { changes: [], merged: [], refined: [], conflicts: [] };
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
  return plan;
}
