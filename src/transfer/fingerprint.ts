import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { hashFile } from '../store/blobs.js';
import type { Layer } from '../overlay/layer.js';
import type { Workspace } from '../overlay/workspace.js';
import type { PathState, WorkspaceFingerprint } from './manifest.js';

/**
 * A root agent's base is the workspace on disk, which a bundle does not
 * carry: the receiver's workspace must be a copy of the sender's. What can
 * be checked cheaply and matters most is what the workspace holds where the
 * lineage changed something (the merge bases, what whiteouts hide, where
 * renamed directories came from), plus the git commit for a clearer message.
 */
export function fingerprint(workspace: Workspace, layers: readonly Layer[]): WorkspaceFingerprint {
  const paths: Record<string, PathState> = {};
  for (const layer of layers) {
    for (const [p, e] of layer.entriesList()) {
      paths[p] ??= pathState(workspace, p);
      if (e.kind === 'dir' && e.redirect !== null) paths[e.redirect] ??= pathState(workspace, e.redirect);
    }
  }
  return { git: gitHead(workspace.root), paths };
}

/** Paths where this workspace holds something else than the sender's did, sorted. */
export function differingPaths(sent: WorkspaceFingerprint, workspace: Workspace): string[] {
  return Object.keys(sent.paths).filter((p) => sent.paths[p] !== pathState(workspace, p)).sort();
}

export function gitHeadOf(workspace: Workspace): string | null {
  return gitHead(workspace.root);
}

export function pathState(workspace: Workspace, p: string): PathState {
  const node = workspace.lookup(p);
  if (!node) return 'none';
  if (node.kind === 'dir') return 'dir';
  if (node.kind === 'symlink') return `symlink:${fs.readlinkSync(node.realPath)}`;
  return `file:${hashFile(node.realPath)}:${node.stat.size}`;
}

function gitHead(root: string): string | null {
  try {
    return execFileSync('git', ['-C', root, 'rev-parse', '--verify', '-q', 'HEAD'], {
      encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 10_000,
    }).trim() || null;
  } catch {
    return null;
  }
}
