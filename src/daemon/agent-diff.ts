import type { Overlay } from '../overlay/overlay.js';
import { OverlayError } from '../overlay/registry.js';
import { changedPaths } from '../overlay/tree-diff.js';
import { gitPatch, type FileDiff } from './git-patch.js';

export interface AgentDiff {
  agent: string;
  /** What the diff is against: the agent's base, or the tree at an event. */
  from: { base: number | null } | { seq: number };
  files: FileDiff[];
  /** The patch, bytes as latin1 characters (empty when only the file list was asked for). */
  patch: string;
}

/**
 * `cowfs diff`: the agent's working tree against its base (the parent's
 * commit it sits on, or the workspace on disk), or against its own tree at
 * event `from`, rebuilt by replay.
 */
export function agentDiff(ov: Overlay, agent: string, opts: { from?: number; paths?: string[]; patch: boolean }): AgentDiff {
  const a = ov.agent(agent);
  const tree = ov.tree(agent);
  tree.settle();
  if (opts.from !== undefined && (opts.from < a.createdSeq || opts.from > ov.log.head)) {
    throw new OverlayError(`--from ${opts.from}: ${agent} exists from event ${a.createdSeq} to ${ov.log.head}`);
  }
  const before = opts.from === undefined ? ov.commitView(a.base) : ov.replay(agent, opts.from);
  const paths = (opts.paths ?? []).map((p) => p.replace(/^\.\/+/, '').replace(/\/+$/, '')).filter((p) => p !== '' && p !== '.');
  // Such a path matches nothing: an empty diff would read as "no changes there".
  const outside = paths.find((p) => p.startsWith('/') || p.split('/').includes('..'));
  if (outside !== undefined) throw new OverlayError(`${outside} is outside the tree: give paths relative to its root`);
  const { files, patch } = gitPatch(changedPaths(before, tree.tree, ov.blobs, paths), ov.blobs, opts.patch);
  return { agent, from: opts.from === undefined ? { base: a.base } : { seq: opts.from }, files, patch };
}
