import type { Cascade, CascadeReport } from '../cascade/cascade.js';
import type { Overlay } from '../overlay/overlay.js';
import { OverlayError } from '../overlay/registry.js';
import { changedPaths } from '../overlay/tree-diff.js';
import { TreeView } from '../overlay/view.js';
import { landIntoParent } from './parent-landing.js';
import { conflictMessage, planLanding, type LandConflict } from './plan.js';
import { HeadMovedError, landIntoWorkspace } from './workspace-landing.js';

/** Plans a landing into the workspace may make when the agent's head keeps moving under it. */
const LAND_ATTEMPTS = 3;

export interface LandOptions {
  /** The parent agent, as the user named it (must be the agent's parent). */
  into?: string;
  /** The workspace on disk (the agent must be a root agent). */
  workspace?: boolean;
  dryRun?: boolean;
  /** Files written so far, of how many (a landing into the workspace). */
  onProgress?: (done: number, total: number) => void;
}

export interface LandResult {
  agent: string;
  /** The parent agent, or null for the workspace. */
  into: string | null;
  commit: number;
  dryRun: boolean;
  /** Paths the landed commit changes, and those the target needed written. */
  paths: string[];
  changed: { path: string; action: 'write' | 'delete' | 'mkdir' }[];
  /** Changes in the agent's working tree that were not committed, hence not landed. */
  uncommitted: number;
  parentCommit?: number;
  cascade?: CascadeReport;
}

/** A landing refused because of conflicts: the message lists them; `conflicts` carries them as data. */
export class LandConflictError extends OverlayError {
  constructor(message: string, readonly conflicts: LandConflict[]) {
    super(message);
  }
}

/**
 * `cowfs land AGENT`: the agent's committed changes into its parent — the
 * parent agent (a commit there) or, for a root agent, the workspace on
 * disk. Any conflict refuses the whole landing before anything is written.
 */
export async function land(ov: Overlay, cascade: Cascade, agent: string, opts: LandOptions, attempt = 1): Promise<LandResult> {
  const a = ov.agent(agent);
  const parent = a.parent;
  if (opts.into !== undefined && opts.workspace) throw new OverlayError('give either --into PARENT or --into-workspace, not both');
  if (opts.workspace && parent !== null) {
    throw new OverlayError(`${agent} is based on agent ${parent}, not on the workspace: land it into ${parent} (cowfs land ${agent}), then ${parent} into the workspace`);
  }
  if (opts.into !== undefined && opts.into !== parent) {
    throw new OverlayError(`${agent} can only land into its parent, ${parent ?? 'the workspace (--into-workspace)'}, not ${opts.into}`);
  }
  const targetName = parent ?? 'the workspace';
  ov.tree(agent).settle();
  const target = parent === null ? new TreeView([], ov.workspace) : ov.commitView(ov.agent(parent).head);
  const plan = planLanding(ov, agent, target, parent === null ? 'workspace' : `${parent}@${ov.agent(parent).head}`);
  if (plan.conflicts.length > 0) throw new LandConflictError(conflictMessage(plan, targetName), plan.conflicts);
  // The state directory and the mountpoints inside the workspace are hidden from every tree, so an
  // agent can make a name there; landing it would write into the daemon's state or its own mount.
  const hidden = parent === null ? plan.items.find((i) => ov.workspace.isHidden(i.path)) : undefined;
  if (hidden) {
    throw new OverlayError(`cannot land ${agent} into the workspace: ${hidden.path} is where the daemon keeps its state or mounts an agent; nothing was written (remove it from ${agent} and commit)`);
  }
  const uncommitted = changedPaths(ov.commitView(a.head), ov.tree(agent).tree, ov.blobs).length;
  const result: LandResult = {
    agent, into: parent, commit: a.head, dryRun: opts.dryRun === true, paths: plan.paths, uncommitted,
    changed: plan.items.map((i) => ({ path: i.path, action: i.result === null ? 'delete' : i.result.kind === 'dir' ? 'mkdir' : 'write' })),
  };
  // Nothing committed since the base: nothing to land, nothing to record (git's "Already up to date").
  if (opts.dryRun || plan.paths.length === 0) return result;
  if (parent === null) {
    try {
      await landIntoWorkspace(ov, cascade, plan, opts.onProgress);
    } catch (err) {
      // A human's edit on disk just before `cowfs land` rebases the agent while its files are
      // prepared: plan again against what the workspace holds now (a few times, then give up).
      if (err instanceof HeadMovedError && attempt < LAND_ATTEMPTS) return land(ov, cascade, agent, opts, attempt + 1);
      throw err;
    }
    return result;
  }
  const r = landIntoParent(ov, cascade, plan, parent);
  return { ...result, parentCommit: r.commit, cascade: r.cascade };
}
