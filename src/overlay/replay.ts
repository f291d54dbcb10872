import type { EventLog } from '../events/log.js';
import { isLayerOp } from '../events/types.js';
import { OverlayError } from './registry.js';
import { fromRecorded, Layer } from './layer.js';
import { TreeView } from './view.js';
import type { Workspace } from './workspace.js';

/**
 * Rebuilds an agent's tree at event `to` from the log alone (DESIGN.md,
 * "Events"): its own operations on top of the commits of its ancestors,
 * each ancestor rebuilt from the layer changes its AGENT_COMMIT_CREATED events record — which is
 * all another machine needs to receive. The same Layer.apply as the live
 * tree, so replay cannot drift from it.
 */
export function replayView(log: EventLog, workspace: Workspace, agent: string, to = Infinity): TreeView {
  let own = new Layer();
  let parent: string | null | undefined;
  let base: number | null = null;
  for (const ev of log.byAgent(agent, to)) {
    if (ev.type === 'AGENT_CREATED') {
      // A name reused after a removal: only its latest life counts.
      ({ parent, base } = ev);
      own = new Layer();
    }
    else if (ev.type === 'AGENT_REBASED') {
      own.applyChanges(fromRecorded(ev.changes));
      base = ev.base;
    } else if (isLayerOp(ev)) own.apply(ev);
  }
  if (parent === undefined) throw new OverlayError(`agent ${agent} did not exist at event ${to}`);
  return new TreeView([own, ...commitChain(log, parent, base)], workspace);
}

/** The layers of `agent`'s commit `commit` and of every commit below it, top first. */
function commitChain(log: EventLog, agent: string | null, commit: number | null): Layer[] {
  if (agent === null || commit === null) return [];
  let layer = new Layer();
  let parent: string | null | undefined;
  let base: number | null = null;
  let found = false;
  for (const ev of log.byAgent(agent)) {
    if (ev.type === 'AGENT_CREATED') {
      ({ parent, base } = ev);
      layer = new Layer();
      found = ev.head === commit;
    } else if (ev.type === 'AGENT_COMMIT_CREATED') {
      layer.applyChanges(fromRecorded(ev.changes));
      base = ev.base;
      found = ev.commit === commit;
    } else if (ev.type === 'AGENT_REBASED') {
      layer.applyChanges(fromRecorded(ev.headChanges));
      base = ev.base;
      found = ev.head === commit;
    }
    if (found) break;
  }
  if (!found || parent === undefined) throw new OverlayError(`the log has no commit ${commit} of agent ${agent}`);
  return [layer, ...commitChain(log, parent, base)];
}
