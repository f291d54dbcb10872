import type { Cascade, CascadeReport } from '../cascade/cascade.js';
import type { LayerChange } from '../overlay/layer.js';
import { sameEntry } from '../overlay/layer-ops.js';
import type { Overlay } from '../overlay/overlay.js';

/**
 * After a landing the agent sits on the landed result, `base` (its parent's
 * new head, or the workspace on disk: null). Its head no longer holds the
 * landed paths — what lies below does, merged with whatever the target had
 * — and its working tree keeps only what it changed after the landed
 * commit (for a root agent with the landed content as the new merge base).
 * One AGENT_REBASED (with `also` in its transaction); then its children are
 * rebased onto its new head.
 *
 * Not the cascade's generic rebase: that would merge the agent's own
 * uncommitted edits against its old base, where the landed commit counts
 * as a change of the other side and same-line edits would conflict.
 */
export function settleLanded(
  ov: Overlay, cascade: Cascade, agent: string, paths: readonly string[], base: number | null, commit: number, also?: () => void,
): CascadeReport {
  const a = ov.agent(agent);
  const head = ov.registry.commitLayer(a.head);
  const work = ov.tree(agent).layer;
  const headChanges: LayerChange[] = [];
  const changes: LayerChange[] = [];
  for (const p of paths) {
    const h = head.get(p);
    const w = work.get(p);
    if (h) headChanges.push([p, undefined]);
    if (!w) continue;
    if (sameEntry(w, h)) changes.push([p, undefined]);
    else if (w.kind === 'file' && base === null) {
      const onDisk = ov.workspace.lookup(p);
      changes.push([p, { ...w, baseHash: onDisk?.kind === 'file' ? ov.blobs.putFile(onDisk.realPath, 'copy') : null }]);
    }
  }
  const into = base === null ? 'the workspace' : `${a.parent} as commit ${base}`;
  ov.applyRebase(agent, {
    base, changes, headChanges, merged: [], refined: [], conflicts: [], message: `landed commit ${commit} into ${into}`, also,
  });
  return cascade.fromCommit(agent);
}

