import type { CowEvent } from '../events/types.js';
import { formatBytes } from './output.js';

/** One event as one line: `#seq  time  agent  TYPE  what`. */
export function formatEvent(ev: CowEvent): string {
  const time = new Date(ev.time).toISOString().slice(11, 23);
  return `#${String(ev.seq).padEnd(6)} ${time}  ${ev.agent.padEnd(12)} ${ev.type.padEnd(20)} ${describe(ev)}`;
}

function describe(ev: CowEvent): string {
  switch (ev.type) {
    case 'put': case 'truncate': return `${ev.path} (${formatBytes(ev.entry.size)}, ${ev.entry.mode.toString(8)})`;
    case 'mkdir': return ev.path + (ev.entry.opaque ? ' (opaque)' : '');
    case 'symlink': return `${ev.path} -> ${ev.entry.target}`;
    case 'delete': case 'rmdir': return ev.path;
    case 'move': return `${ev.from} -> ${ev.to}`;
    case 'chmod': return `${ev.path} ${ev.mode.toString(8)}`;
    case 'chown': return `${ev.path} ${ev.uid}:${ev.gid}`;
    case 'utimens': return `${ev.path} ${new Date(ev.mtimeMs).toISOString()}`;
    case 'AGENT_CREATED': return `parent ${ev.parent ?? '(workspace)'}${ev.base !== null ? ` at commit ${ev.base}` : ''}`;
    case 'AGENT_COMMIT_CREATED': return `commit ${ev.commit} "${ev.message}" (${ev.ops.length} operations)`;
    case 'AGENT_REMOVED': return '';
    case 'WORKTREE_CHANGED': return `${ev.parent} moved from commit ${ev.from ?? '-'} to ${ev.to}`;
    case 'AGENT_REBASED': return `onto ${ev.base === null ? 'the workspace' : `commit ${ev.base}`}: ${ev.merged.length} merged, ${ev.conflicts.length} conflicted${ev.refined.length ? `, ${ev.refined.length} refined (character level)` : ''}`;
    case 'WORKTREE_CONFLICT_DETECTED': return ev.paths.join(', ');
    case 'WORKTREE_CONFLICT_RESOLVED': return `${ev.path} (${ev.how})`;
    case 'AGENT_LANDED': return `commit ${ev.commit} into ${ev.into ?? 'the workspace'}: ${ev.paths.length} paths${ev.parentCommit !== null ? ` (commit ${ev.parentCommit} there)` : ''}${ev.recovered ? ', finished after a crash' : ''}`;
    case 'AGENT_UNDONE': return `back to event ${ev.to} (${ev.ops} operations; redo: cowfs undo ${ev.agent})`;
  }
}
