import type { CowEvent } from '../events/types.js';
import type { BlobId } from '../store/blobs.js';

/** One agent of the lineage, root first: the events replay needs, as they are in the sender's log. */
export interface LineageAgent {
  name: string;
  parent: string | null;
  events: CowEvent[];
}

/** What the workspace on disk holds at a path the lineage changed: `none`, `dir`, `symlink:TARGET`, `file:BLOBID`. */
export type PathState = string;

export interface WorkspaceFingerprint {
  /** The workspace's git commit (HEAD), when it is a git repository. */
  git: string | null;
  /** Every path some layer of the lineage holds, and what the workspace had there. */
  paths: Record<string, PathState>;
}

/** The manifest frame of a bundle. */
export interface BundleManifest {
  format: number;
  agent: string;
  createdAt: number;
  /** Root first; the last is the exported agent. */
  lineage: LineageAgent[];
  workspace: WorkspaceFingerprint;
  /** Every blob the lineage names; those not in the bundle must already be on the receiver (`--have`). */
  blobs: BlobId[];
  /** How many of them the bundle carries, and their bytes. */
  included: number;
  includedBytes: number;
}

/** Parses a `cowfs have` manifest: one blob id a line, `#` comments. */
export function parseHave(text: string): Set<BlobId> {
  const ids = new Set<BlobId>();
  for (const line of text.split('\n')) {
    const id = line.trim();
    if (id === '' || id.startsWith('#')) continue;
    if (!/^[0-9a-f]{16}:\d+(:\d+)?$/.test(id)) throw new Error(`not a blob id in the have-manifest: ${JSON.stringify(id.slice(0, 80))}`);
    ids.add(id);
  }
  return ids;
}
