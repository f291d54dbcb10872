import type { BlobId } from '../store/blobs.js';
import type { DirEntry, Entry, FileEntry, LiveEntry, SymlinkEntry } from '../overlay/entry.js';

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

/** A layer change as recorded: path → entry, or null for removed. */
export type RecordedChange = [path: string, entry: Entry | null];

export interface AgentCommitCreated {
  type: 'AGENT_COMMIT_CREATED';
  commit: number;
  message: string;
  base: number | null;
  /** The operations since the previous commit, as they happened (for people and audits). */
  ops: LayerOp[];
  /** The previous commit's layer → this one's: what replay applies (exact, also after rebases). */
  changes: RecordedChange[];
}

export interface AgentRemoved {
  type: 'AGENT_REMOVED';
}

/** A parent's head moved: this agent (a direct child) is to be rebased from `from` to `to`. */
export interface WorktreeChanged {
  type: 'WORKTREE_CHANGED';
  parent: string;
  from: number | null;
  to: number;
}

/** The agent now sits on `base`; its working layer and head changed as recorded. */
export interface AgentRebased {
  type: 'AGENT_REBASED';
  from: number | null;
  /** null: still the live workspace (a root agent rebased onto a change on disk). */
  base: number | null;
  /** The working layer's changes (what replay applies to the agent's own layer). */
  changes: RecordedChange[];
  /** The new head commit and its changes from the previous head's layer. */
  head: number;
  headChanges: RecordedChange[];
  /** Paths merged cleanly, and those refined at character level (opt-in), for audits. */
  merged: string[];
  refined: { path: string; hunks: RefinedHunkRecord[] }[];
  conflicts: string[];
}

export interface RefinedHunkRecord {
  line: number;
  base: string;
  ours: string;
  theirs: string;
  result: string;
}

/** One file that could not be merged cleanly: the three versions as data. */
export interface ConflictRecord {
  path: string;
  /** mode: the content merged, the permission bits were changed differently on both sides; symlink: retargeted on both */
  kind: 'content' | 'binary' | 'delete-modify' | 'type' | 'mode' | 'symlink';
  /** Each version's content when it is a file (null: absent, or not a file). */
  base: BlobId | null;
  ours: BlobId | null;
  theirs: BlobId | null;
  /** Each version's permission bits when it is a file, so a resolution takes the chosen side's mode. */
  modes?: { base: number | null; ours: number | null; theirs: number | null };
  /** Each version's target when it is a symlink (set when a symlink is involved). */
  targets?: { base: string | null; ours: string | null; theirs: string | null };
  /** What each version is, for a `type` conflict (a directory and absent are both no blob). */
  kinds?: { base: LiveEntry['kind'] | null; ours: LiveEntry['kind'] | null; theirs: LiveEntry['kind'] | null };
  /** What the merge left at the path in the agent's layer (`entryFingerprint`): a commit resolves the path once it changed. */
  left?: string;
  /** Conflicting hunks of a text conflict (line numbers in the working file). */
  hunks: { line: number; ours: string; base: string; theirs: string }[];
  /** The parent commits the merge went from and to (null: the workspace on disk). */
  from: number | null;
  to: number | null;
}

export interface WorktreeConflictDetected {
  type: 'WORKTREE_CONFLICT_DETECTED';
  paths: string[];
  conflicts: ConflictRecord[];
}

export interface WorktreeConflictResolved {
  type: 'WORKTREE_CONFLICT_RESOLVED';
  path: string;
  how: 'ours' | 'theirs' | 'file' | 'commit';
}

/**
 * The agent's committed changes were landed into its parent (a commit
 * there, `parentCommit`) or into the workspace on disk (`into` null).
 */
export interface AgentLanded {
  type: 'AGENT_LANDED';
  into: string | null;
  /** The agent's head commit that was landed. */
  commit: number;
  parentCommit: number | null;
  paths: string[];
  /** Finished by the daemon's start after a crash in the middle of writing the workspace. */
  recovered?: boolean;
}

/**
 * The working tree was put back to what it was at event `to`; the layer
 * operations just before this event did it. `before`: the last event
 * before the undo, where a later undo (a redo) goes back to.
 */
export interface AgentUndone {
  type: 'AGENT_UNDONE';
  to: number;
  before: number;
  ops: number;
}

export type LifecycleEvent =
  | AgentCreated | AgentCommitCreated | AgentRemoved | WorktreeChanged | AgentRebased
  | WorktreeConflictDetected | WorktreeConflictResolved | AgentLanded | AgentUndone;

export type EventBody = LayerOp | LifecycleEvent;

/** One event of the log: a global sequence number, the agent, a timestamp. */
export type CowEvent = EventBody & { seq: number; agent: string; time: number };

export function isLayerOp(ev: EventBody): ev is LayerOp {
  return !ev.type.startsWith('AGENT_') && !ev.type.startsWith('WORKTREE_');
}
