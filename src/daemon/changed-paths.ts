import { isLayerOp, type CowEvent } from '../events/types.js';
import { chainPaths, opPaths } from '../overlay/layer-ops.js';
import type { Overlay } from '../overlay/overlay.js';

/**
 * The paths whose content, attributes or existence an event may have
 * changed in its agent's working tree (a superset is fine: it only costs a
 * kernel cache miss). An undo is the layer operations logged before its
 * AGENT_UNDONE. A rebase changes what the agent inherits too: every
 * path of the parent's commit layers it left or reached.
 */
export function changedPaths(ev: CowEvent, overlay: Overlay): string[] {
  if (isLayerOp(ev)) return opPaths(ev);
  switch (ev.type) {
    case 'WORKTREE_CONFLICT_RESOLVED':
      return [ev.path];
    case 'WORKTREE_CONFLICT_DETECTED':
    case 'AGENT_LANDED':
      return ev.paths;
    case 'AGENT_REBASED': {
      const out = ev.changes.map(([p]) => p);
      if (ev.from !== ev.base) out.push(...chainPaths(overlay.registry.chainOf(ev.from), overlay.registry.chainOf(ev.base)));
      return out;
    }
    default:
      return [];
  }
}
