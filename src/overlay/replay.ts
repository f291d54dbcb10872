import type { EventLog } from '../events/log.js';
import { isLayerOp, type EventBody } from '../events/types.js';
import { OverlayError } from './registry.js';
import { fromRecorded, Layer } from './layer.js';
import { TreeView } from './view.js';
import type { Workspace } from './workspace.js';

/**
 * An agent as its events build it, one event at a time: its working layer,
 * its head's layer and its base. The one reading of the log that replay
 * and import share, with the same Layer.apply as the live tree, so neither
 * can drift from it. `withWork: false` skips the working layer (for an
 * ancestor, of which only the commits matter).
 */
export class AgentReplay {
  work = new Layer();
  head = new Layer();
  /** The parent its AGENT_CREATED named; undefined before that. */
  parent: string | null | undefined;
  base: number | null = null;

  constructor(private readonly withWork = true) {}

  /** Applies one event; returns the id of the commit it made (its creation, a commit, a rebase), if any. */
  apply(ev: EventBody): number | undefined {
    switch (ev.type) {
      case 'AGENT_CREATED':
        // A name reused after a removal: only its latest life counts.
        ({ parent: this.parent, base: this.base } = ev);
        this.work = new Layer();
        this.head = new Layer();
        return ev.head;
      case 'AGENT_COMMIT_CREATED':
        this.head.applyChanges(fromRecorded(ev.changes));
        this.base = ev.base;
        return ev.commit;
      case 'AGENT_REBASED':
        if (this.withWork) this.work.applyChanges(fromRecorded(ev.changes));
        this.head.applyChanges(fromRecorded(ev.headChanges));
        this.base = ev.base;
        return ev.head;
      default:
        if (this.withWork && isLayerOp(ev)) this.work.apply(ev);
        return undefined;
    }
  }
}

/**
 * Rebuilds an agent's tree at event `to` from the log alone (DESIGN.md,
 * "Events"): its own operations on top of the commits of its ancestors,
 * each ancestor rebuilt from the layer changes its AGENT_COMMIT_CREATED events record — which is
 * all another machine needs to receive.
 */
export function replayView(log: EventLog, workspace: Workspace, agent: string, to = Infinity): TreeView {
  const r = new AgentReplay();
  for (const ev of log.byAgent(agent, to)) r.apply(ev);
  if (r.parent === undefined) throw new OverlayError(`agent ${agent} did not exist at event ${to}`);
  return new TreeView([r.work, ...commitChain(log, r.parent, r.base)], workspace);
}

/** The layers of `agent`'s commit `commit` and of every commit below it, top first. */
function commitChain(log: EventLog, agent: string | null, commit: number | null): Layer[] {
  if (agent === null || commit === null) return [];
  const r = new AgentReplay(false);
  let found = false;
  for (const ev of log.byAgent(agent)) {
    found = r.apply(ev) === commit;
    if (found) break;
  }
  if (!found || r.parent === undefined) throw new OverlayError(`the log has no commit ${commit} of agent ${agent}`);
  return [r.head, ...commitChain(log, r.parent, r.base)];
}
