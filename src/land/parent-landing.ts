import type { Cascade, CascadeReport } from '../cascade/cascade.js';
import { lowerPath } from '../cascade/rebase.js';
import type { LayerOp } from '../events/types.js';
import type { Entry } from '../overlay/entry.js';
import { opSetting } from '../overlay/layer-ops.js';
import type { Overlay } from '../overlay/overlay.js';
import { depth } from '../overlay/paths.js';
import { OverlayError } from '../overlay/registry.js';
import { sameNode } from '../overlay/tree-diff.js';
import { kindOf, TreeView } from '../overlay/view.js';
import type { LandItem, LandPlan } from './plan.js';
import { settleLanded } from './settle.js';

/**
 * Lands a planned landing into the parent agent as a commit there (its
 * working tree gets the same ordinary layer events), then cascades as any
 * commit does, except that the landing agent itself is settled onto that
 * commit (settleLanded), where its landed changes show through from below.
 * The parent must have no uncommitted change at a landed path (as git
 * refuses to merge over local changes).
 */
export function landIntoParent(ov: Overlay, cascade: Cascade, plan: LandPlan, parent: string): { commit: number; cascade: CascadeReport } {
  const p = ov.agent(parent);
  if (Object.keys(p.conflicts ?? {}).length > 0) throw new OverlayError(`${parent} has unresolved conflicts; resolve them before landing into it`);
  const a = ov.agent(plan.agent);
  if (a.base !== p.head) throw new OverlayError(`${plan.agent} is not based on ${parent}'s latest commit yet (${a.base} < ${p.head}); resolve its pending rebase first`);
  const work = ov.tree(parent);
  work.settle();
  const headView = ov.commitView(p.head);
  const dirty = plan.items.filter((i) => !sameNode(work.tree.lookup(i.path), headView.lookup(i.path), ov.blobs)).map((i) => i.path);
  if (dirty.length > 0) {
    throw new OverlayError(`${parent} has uncommitted changes at ${dirty.join(', ')}; commit them first (cowfs commit ${parent})`);
  }
  const head = ov.registry.commitLayer(p.head);
  const next = head.clone();
  const view = new TreeView([next, ...ov.registry.chainOf(p.base)], ov.workspace);
  const below = new TreeView(ov.registry.chainOf(p.base), ov.workspace);
  const existsBelow = (path: string) => {
    const q = lowerPath(next, path);
    return q !== null && below.lookup(q) !== undefined;
  };
  const ops: LayerOp[] = [];
  const add = (op: LayerOp) => {
    next.apply(op);
    ops.push(op);
  };
  const isDir = (i: LandItem) => i.result?.kind === 'dir' || (i.result === null && i.theirs?.kind === 'dir');
  const byDepth = (desc: boolean) => (x: LandItem, y: LandItem) => (desc ? depth(y.path) - depth(x.path) : depth(x.path) - depth(y.path));
  for (const i of plan.items.filter((x) => x.result === null && !isDir(x)).sort(byDepth(true))) {
    add({ type: 'delete', path: i.path, whiteout: existsBelow(i.path) });
  }
  for (const i of plan.items.filter((x) => x.result !== null).sort(byDepth(false))) add(opSetting(i.path, entryFor(ov, i, head.get(i.path), existsBelow(i.path))));
  // A directory the child removed goes only once nothing is left in it.
  for (const i of plan.items.filter((x) => x.result === null && isDir(x)).sort(byDepth(true))) {
    const r = view.lookup(i.path);
    if (r && kindOf(r) === 'dir' && view.list(i.path)?.size === 0) add({ type: 'rmdir', path: i.path, whiteout: existsBelow(i.path) });
  }
  const commit = ov.commitOps(parent, ops, `land ${plan.agent} (commit ${plan.commit})`, (c) => {
    ov.log.append(plan.agent, { type: 'AGENT_LANDED', into: parent, commit: plan.commit, parentCommit: c.id, paths: plan.paths });
  });
  // The landing agent first (see settleLanded), then its siblings, as after any commit of the parent.
  const own = settleLanded(ov, cascade, plan.agent, plan.paths, commit.id, plan.commit);
  const rest = cascade.fromCommit(parent);
  return {
    commit: commit.id,
    cascade: {
      rebased: [plan.agent, ...own.rebased, ...rest.rebased],
      conflicted: [...own.conflicted, ...rest.conflicted],
      paused: [...own.paused, ...rest.paused],
    },
  };
}

/** The parent's layer entry for a landed result; its merge base stays what the parent's own entry had, or what lies below. */
function entryFor(ov: Overlay, i: LandItem, own: Entry | undefined, existsBelow: boolean): Entry {
  const r = i.result!;
  const ino = i.theirs?.ino ?? r.ino;
  const common = { mtimeMs: Date.now(), ino, uid: 0, gid: 0 };
  switch (r.kind) {
    case 'dir': return { kind: 'dir', mode: r.mode, opaque: existsBelow, redirect: null, ...common };
    case 'symlink': return { kind: 'symlink', target: r.target, ...common };
    case 'file': {
      const baseHash = own?.kind === 'file' ? own.baseHash : i.theirs?.kind === 'file' ? (i.theirs.blob ?? ov.blobs.put(i.theirs.bytes)) : null;
      return { kind: 'file', hash: r.blob ?? ov.blobs.put(r.bytes), size: r.bytes.length, mode: r.mode, baseHash, ...common };
    }
  }
}
