import type { BlobStore } from '../store/blobs.js';
import type { Layer } from './layer.js';
import { contentOf, modeOf, targetOf, walk } from './materialize.js';
import { isWithin } from './paths.js';
import { kindOf, type Resolved, type TreeView } from './view.js';

/** One path that resolves differently in two trees (undefined: absent on that side). */
export interface PathChange {
  path: string;
  before?: Resolved;
  after?: Resolved;
}

/**
 * The paths whose content, kind or mode differ between two trees over the
 * same workspace. Only the entries of layers the two trees do not share can
 * make a difference, so those are the candidates; an entry that hides or
 * moves what lies below (a whiteout, a file over a directory, an opaque or
 * renamed directory) brings in the subtrees under it on both sides.
 * `within`: only paths inside one of these (all when empty).
 */
export function changedPaths(before: TreeView, after: TreeView, blobs: BlobStore, within: readonly string[] = []): PathChange[] {
  const shared = new Set(before.layers.filter((l) => after.layers.includes(l)));
  const candidates = new Set<string>();
  const add = (p: string) => {
    if (within.length === 0 || within.some((w) => isWithin(p, w))) candidates.add(p);
  };
  for (const layer of new Set<Layer>([...before.layers, ...after.layers])) {
    if (shared.has(layer)) continue;
    for (const [p, e] of layer.entriesList()) {
      // What an entry can change: its own subtree, walked only where it meets `within` (a whiteout
      // of a large directory above one path of `within` walks that path, not the directory).
      const roots = within.length === 0 ? [p]
        : within.filter((w) => isWithin(p, w) || isWithin(w, p)).map((w) => (isWithin(p, w) ? p : w));
      if (roots.length === 0) continue;
      add(p);
      if (e.kind === 'dir' && !e.opaque && e.redirect === null) continue;
      for (const root of new Set(roots)) for (const view of [before, after]) for (const [q] of walk(view, root)) add(q);
    }
  }
  const out: PathChange[] = [];
  for (const p of [...candidates].sort()) {
    const b = before.lookup(p);
    const a = after.lookup(p);
    if (!sameNode(b, a, blobs)) out.push({ path: p, before: b, after: a });
  }
  return out;
}

/** Do two resolved paths hold the same thing (kind, mode, content or target)? */
export function sameNode(x: Resolved | undefined, y: Resolved | undefined, blobs: BlobStore): boolean {
  if (!x || !y) return x === y;
  const kind = kindOf(x);
  if (kind !== kindOf(y)) return false;
  if (kind === 'dir') return modeOf(x) === modeOf(y);
  if (kind === 'symlink') return targetOf(x) === targetOf(y);
  if (modeOf(x) !== modeOf(y)) return false;
  if (x.src === 'disk' && y.src === 'disk') return x.node.realPath === y.node.realPath;
  if (x.src === 'layer' && y.src === 'layer' && x.entry.kind === 'file' && y.entry.kind === 'file') {
    if (x.entry.hash === y.entry.hash) return true;
    if (x.entry.size !== y.entry.size) return false;
  }
  return contentOf(x, blobs).equals(contentOf(y, blobs));
}
