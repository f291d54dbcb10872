import type { BlobId } from '../store/blobs.js';
import type { DirEntry, FileEntry, SymlinkEntry } from '../overlay/entry.js';

/**
 * Operations on a layer. Each carries its effect on the layer, decided when
 * it happened (whether a whiteout was needed, where a renamed inherited
 * directory's content lives), so replaying it needs neither the original
 * disk nor the tree below: live writes and replay apply the same op with
 * the same code (Layer.apply).
 */
export type LayerOp =
  | { type: 'put'; path: string; entry: FileEntry }
  | { type: 'truncate'; path: string; entry: FileEntry }
  | { type: 'mkdir'; path: string; entry: DirEntry }
  | { type: 'symlink'; path: string; entry: SymlinkEntry }
  /** Drops the path (and what the layer holds under it); `whiteout` hides what lies below. */
  | { type: 'delete'; path: string; whiteout: boolean }
  | { type: 'rmdir'; path: string; whiteout: boolean }
  /**
   * Moves the layer's entries at and under `from` to `to`. `entry` is what
   * `to` becomes (for an inherited directory: a dir whose `redirect` names
   * where its content lies below); `whiteout` hides `from` below.
   */
  | { type: 'move'; from: string; to: string; entry: FileEntry | DirEntry | SymlinkEntry; whiteout: boolean }
  /** Metadata of an entry already in the layer. */
  | { type: 'chmod'; path: string; mode: number }
  | { type: 'chown'; path: string; uid: number; gid: number }
  | { type: 'utimens'; path: string; mtimeMs: number };

export type LayerOpType = LayerOp['type'];

/** The agent's parent: another agent, or the live workspace (null). */
export interface AgentCreated {
  type: 'AGENT_CREATED';
  parent: string | null;
  /** The parent's head commit this agent is based on (null: the live workspace). */
  base: number | null;
  /** The agent's own first (empty) commit. */
  head: number;
}

export interface AgentCommitCreated {
  type: 'AGENT_COMMIT_CREATED';
  commit: number;
  message: string;
  base: number | null;
  /** The operations since the previous commit: replaying these rebuilds the commit's tree. */
  ops: LayerOp[];
}

export interface AgentRemoved {
  type: 'AGENT_REMOVED';
}

export type LifecycleEvent = AgentCreated | AgentCommitCreated | AgentRemoved;

export type EventBody = LayerOp | LifecycleEvent;

/** One event of the log: a global sequence number, the agent, a timestamp. */
export type CowEvent = EventBody & { seq: number; agent: string; time: number };

export function isLayerOp(ev: EventBody): ev is LayerOp {
  return !ev.type.startsWith('AGENT_') && !ev.type.startsWith('WORKTREE_');
}
