import type { EventLog } from '../events/log.js';
import { isLayerOp } from '../events/types.js';
import { OverlayError } from './registry.js';

/**
 * Which event `cowfs undo AGENT [--to SEQ]` goes back to. By default, to
 * just before the agent's last operation; when that was itself an undo, to
 * just before the undo (a redo). An undo never reaches behind the agent's
 * last rebase or creation: before it the agent sat on another base, so its
 * own layer from then would not give back the tree it had then.
 */
export function undoTarget(log: EventLog, agent: string, to?: number): number {
  let floor = 0;
  let last: number | undefined;
  for (const ev of log.byAgent(agent)) {
    if (ev.type === 'AGENT_CREATED' || ev.type === 'AGENT_REBASED') {
      floor = ev.seq;
      last = undefined;
    } else if (ev.type === 'AGENT_UNDONE') last = ev.before;
    else if (isLayerOp(ev)) last = ev.seq - 1;
  }
  const why = `${agent}'s base changed at event ${floor} (created, rebased or landed there)`;
  if (to === undefined) {
    if (last === undefined) throw new OverlayError(`nothing to undo: ${agent} has written nothing since event ${floor}`);
    return Math.max(last, floor);
  }
  if (to < floor) throw new OverlayError(`cannot undo ${agent} back to event ${to}: ${why}; the earliest is ${floor}`);
  if (to > log.head) throw new OverlayError(`no event ${to} yet (the last is ${log.head})`);
  return to;
}
