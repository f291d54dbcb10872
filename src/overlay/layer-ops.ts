import type { LayerOp } from '../events/types.js';
import type { Entry } from './entry.js';
import type { Layer } from './layer.js';
import { isWithin } from './paths.js';

/** The layer operation that sets `p` to `e` (a whiteout: a delete that hides what lies below). */
export function opSetting(p: string, e: Entry): LayerOp {
  switch (e.kind) {
    case 'file': return { type: 'put', path: p, entry: e };
    case 'dir': return { type: 'mkdir', path: p, entry: e };
    case 'symlink': return { type: 'symlink', path: p, entry: e };
    case 'whiteout': return { type: 'delete', path: p, whiteout: true };
  }
}

/**
 * Ordinary layer operations that turn `current` into `target` when applied
 * in order (Layer.apply): each topmost path whose entry goes is dropped
 * with its subtree, then every target entry under a dropped path, new or
 * different, is set, parents first. So an undo or a landing is logged as the
 * same put/delete/mkdir/symlink events a writer makes, and replay and every
 * listener (a FUSE adapter invalidating its cache) need nothing new.
 */
export function opsBetween(current: Layer, target: Layer): LayerOp[] {
  const dropped = [...current.entriesList()].filter(([p]) => target.get(p) === undefined).map(([p]) => p).sort();
  const roots: string[] = [];
  for (const p of dropped) if (!roots.some((r) => isWithin(p, r))) roots.push(p);
  const ops: LayerOp[] = roots.map((p) => ({ type: 'delete', path: p, whiteout: false }));
  const sets = [...target.entriesList()]
    .filter(([p, e]) => roots.some((r) => isWithin(p, r)) || !sameEntry(current.get(p), e))
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  for (const [p, e] of sets) ops.push(opSetting(p, e));
  return ops;
}

/** The paths an operation changes (a move: both ends). */
export function opPaths(op: LayerOp): string[] {
  return op.type === 'move' ? [op.from, op.to] : [op.path];
}

/** What a tree moved from one chain of layers to another may resolve differently: every path of a layer only one of them has. */
export function chainPaths(before: readonly Layer[], after: readonly Layer[]): string[] {
  const out: string[] = [];
  for (const l of [...before, ...after]) {
    if (before.includes(l) && after.includes(l)) continue;
    for (const [p] of l.entriesList()) out.push(p);
  }
  return out;
}

/** The same entry, field for field. */
export function sameEntry(a: Entry | undefined, b: Entry | undefined): boolean {
  if (a === b) return true;
  if (!a || !b) return false;
  return JSON.stringify(a) === JSON.stringify(b);
}
