import type { CowEvent } from '../events/types.js';
import type { Overlay } from '../overlay/overlay.js';
import type { Layer } from '../overlay/layer.js';

/**
 * The paths whose content, attributes or existence an event may have
 * changed in its agent's working tree (a superset is fine: it only costs a
 * kernel cache miss). An undo is the layer operations logged before its
 * AGENT_UNDONE. A rebase changes what the agent inherits too: every
 * path of the parent's commit layers it left or reached.
 */
export function changedPaths(ev: CowEvent, overlay: Overlay): string[] {
  switch (ev.type) {
    case 'put': case 'truncate': case 'mkdir': case 'symlink': case 'delete': case 'rmdir':
    case 'chmod': case 'chown': case 'utimens':
      return [ev.path];
    case 'move':
      return [ev.from, ev.to];
    case 'WORKTREE_CONFLICT_RESOLVED':
      return [ev.path];
    case 'WORKTREE_CONFLICT_DETECTED':
    case 'AGENT_LANDED':
      return ev.paths;
    case 'AGENT_REBASED': {
      const out = ev.changes.map(([p]) => p);
      if (ev.from !== ev.base) {
        const before = overlay.registry.chainOf(ev.from);
        const after = overlay.registry.chainOf(ev.base);
        const shared = new Set<Layer>(before.filter((l) => after.includes(l)));
        for (const l of [...before, ...after]) {
          if (shared.has(l)) continue;
          for (const [p] of l.entriesList()) out.push(p);
        }
      }
      return out;
    }
    default:
      return [];
  }
}
