import type { ConflictRecord, CowEvent, EventBody, LayerOp, RecordedChange } from '../events/types.js';
import type { BlobId } from '../store/blobs.js';
import type { Entry } from './entry.js';

/**
 * The blobs an entry, an event or a conflict names: what must stay in the
 * store for the event to be replayed (gc's roots) and what a bundle must
 * carry (export).
 */
export function entryBlobs(e: Entry | null | undefined, out: Set<BlobId>): void {
  if (e?.kind !== 'file') return;
  if (e.hash) out.add(e.hash);
  if (e.baseHash) out.add(e.baseHash);
}

export function conflictBlobs(c: ConflictRecord, out: Set<BlobId>): void {
  for (const id of [c.base, c.ours, c.theirs]) if (id) out.add(id);
}

function changesBlobs(changes: readonly RecordedChange[], out: Set<BlobId>): void {
  for (const [, e] of changes) entryBlobs(e, out);
}

function opBlobs(op: LayerOp, out: Set<BlobId>): void {
  if ('entry' in op) entryBlobs(op.entry, out);
}

export function eventBlobs(ev: EventBody | CowEvent, out: Set<BlobId>): void {
  switch (ev.type) {
    case 'AGENT_COMMIT_CREATED':
      for (const op of ev.ops) opBlobs(op, out);
      changesBlobs(ev.changes, out);
      break;
    case 'AGENT_REBASED':
      changesBlobs(ev.changes, out);
      changesBlobs(ev.headChanges, out);
      break;
    case 'WORKTREE_CONFLICT_DETECTED':
      for (const c of ev.conflicts) conflictBlobs(c, out);
      break;
    case 'AGENT_CREATED': case 'AGENT_REMOVED': case 'WORKTREE_CHANGED': case 'WORKTREE_CONFLICT_RESOLVED':
    case 'AGENT_LANDED': case 'AGENT_UNDONE':
      break;
    default:
      opBlobs(ev, out);
  }
}
