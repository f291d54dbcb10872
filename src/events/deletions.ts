import type { EventLog } from './log.js';

/**
 * When an agent deleted each path it holds a whiteout for (the path: its last delete, rmdir,
 * move away or rebase that left one there, up to event `to`). A root agent keeps no copy of what
 * it deleted from the workspace, so this time is all that tells a change on disk made since
 * (landing, and the rebase onto the workspace) from what the agent saw and deleted.
 */
export function deletionTimes(log: EventLog, agent: string, to = Infinity): Map<string, number> {
  const at = new Map<string, number>();
  for (const ev of log.byAgent(agent, to)) {
    if ((ev.type === 'delete' || ev.type === 'rmdir') && ev.whiteout) at.set(ev.path, ev.time);
    else if (ev.type === 'move' && ev.whiteout) at.set(ev.from, ev.time);
    else if (ev.type === 'AGENT_REBASED') for (const [p, e] of ev.changes) if (e?.kind === 'whiteout') at.set(p, ev.time);
  }
  return at;
}
