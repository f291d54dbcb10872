import { createTwoFilesPatch } from 'diff';
import type { CowEvent } from '../events/types.js';
import { isBinary } from '../merge/index.js';
import { contentOf, targetOf } from '../overlay/materialize.js';
import type { Overlay } from '../overlay/overlay.js';
import { kindOf, type TreeView } from '../overlay/view.js';

/** What a path held in a tree, as text for a diff (null: absent). */
function textAt(view: TreeView, ov: Overlay, p: string): string | Buffer | null {
  const r = view.lookup(p);
  if (!r) return null;
  switch (kindOf(r)) {
    case 'file': return contentOf(r, ov.blobs);
    case 'symlink': return `symlink -> ${targetOf(r)}\n`;
    case 'dir': return null;
  }
}

function diffOf(p: string, before: string | Buffer | null, after: string | Buffer | null): string {
  if (before !== null && after !== null && Buffer.from(before).equals(Buffer.from(after))) return '';
  if ([before, after].some((v) => Buffer.isBuffer(v) && isBinary(v))) return `Binary file ${p} differs\n`;
  return createTwoFilesPatch(before === null ? '/dev/null' : `a/${p}`, after === null ? '/dev/null' : `b/${p}`,
    before === null ? '' : before.toString(), after === null ? '' : after.toString());
}

/**
 * The change one event made, as unified diffs of the paths it touched: the
 * agent's tree just before the event against just after it, both rebuilt
 * from the log.
 */
export function eventDiff(ov: Overlay, ev: CowEvent): string {
  let paths: string[];
  switch (ev.type) {
    case 'put': case 'truncate': case 'delete': case 'symlink': case 'chmod':
      paths = [ev.path];
      break;
    case 'move':
      paths = [ev.from, ev.to];
      break;
    case 'AGENT_COMMIT_CREATED':
      paths = ev.changes.map(([p]) => p);
      break;
    case 'AGENT_REBASED':
      paths = ev.changes.map(([p]) => p);
      break;
    default:
      return '';
  }
  let before: TreeView;
  let after: TreeView;
  try {
    before = ov.replay(ev.agent, ev.seq - 1);
  } catch {
    return '';
  }
  after = ov.replay(ev.agent, ev.seq);
  if (ev.type === 'AGENT_COMMIT_CREATED') {
    // A commit's diff is against the previous commit, not the working tree just before.
    const prev = ov.registry.commit(ev.commit).prev;
    before = prev === null ? before : ov.commitView(prev);
    after = ov.commitView(ev.commit);
  }
  return paths.map((p) => diffOf(p, textAt(before, ov, p), textAt(after, ov, p))).join('');
}
