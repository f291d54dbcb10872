import { deletionTimes } from '../events/deletions.js';
import type { ConflictRecord } from '../events/types.js';
import { mergeFiles } from '../merge/index.js';
import { contentOf, modeOf, targetOf } from '../overlay/materialize.js';
import type { Overlay } from '../overlay/overlay.js';
import { OverlayError } from '../overlay/registry.js';
import { changedPaths } from '../overlay/tree-diff.js';
import { kindOf, TreeView, type Resolved } from '../overlay/view.js';

/** What a path holds, as a landing sees it (null: nothing). `blob`: the content's id once stored. */
export type Node =
  | { kind: 'file'; bytes: Buffer; mode: number; ino: number; blob?: string }
  | { kind: 'symlink'; target: string; ino: number }
  | { kind: 'dir'; mode: number; ino: number }
  | null;

/** One path of a landing: what the target has there now (`theirs`) and what it gets (`result`). */
export interface LandItem {
  path: string;
  theirs: Node;
  result: Node;
}

export type LandConflict = Pick<ConflictRecord, 'path' | 'kind' | 'hunks'>;

export interface LandPlan {
  agent: string;
  /** The agent's head commit being landed. */
  commit: number;
  /** Every path the agent's committed changes touch (whether or not the target needs writing there). */
  paths: string[];
  /** The paths to write, in path order. */
  items: LandItem[];
  conflicts: LandConflict[];
}

function nodeOf(r: Resolved | undefined, ov: Overlay): Node {
  if (!r) return null;
  const ino = r.src === 'disk' ? r.node.stat.ino : r.entry.ino;
  switch (kindOf(r)) {
    case 'dir': return { kind: 'dir', mode: modeOf(r), ino };
    case 'symlink': return { kind: 'symlink', target: targetOf(r), ino };
    case 'file': {
      const blob = r.src === 'layer' && r.entry.kind === 'file' ? r.entry.hash : undefined;
      return { kind: 'file', bytes: contentOf(r, ov.blobs), mode: modeOf(r), ino, blob };
    }
  }
}

function sameNode(x: Node, y: Node): boolean {
  if (x === null || y === null) return x === y;
  if (x.kind !== y.kind) return false;
  if (x.kind === 'symlink') return x.target === (y as typeof x).target;
  if (x.kind === 'dir') return true; // a directory's mode alone is not worth a conflict
  const f = y as typeof x;
  return x.mode === f.mode && x.bytes.equals(f.bytes);
}

/** git's rule for the mode of a merged file: a side that changed it wins. */
function mergedMode(base: Node, ours: Node, theirs: Node): number {
  const m = (n: Node) => (n && n.kind === 'file' ? n.mode : undefined);
  const o = m(ours);
  if (o === undefined) return m(theirs) ?? 0o644;
  return o === m(base) && m(theirs) !== undefined ? m(theirs)! : o;
}

/**
 * Plans landing `agent`'s committed changes (its head against its base)
 * onto `target` (its parent's head, or the workspace on disk). Each path is
 * merged three ways: base = what the agent's change started from, ours =
 * its head, theirs = the target now. Nothing is written here.
 *
 * The merge base of a root agent's path is the content it copied up
 * (`baseHash`), not the live workspace below it, which may have moved on.
 * A deletion has no copy: a workspace file whose status changed (ctime)
 * after the agent deleted it, or that came since, is a delete-modify
 * conflict, not deleted unseen (the kernel's coarse clock only lags:
 * never a conflict for a change made before).
 */
export function planLanding(ov: Overlay, agent: string, target: TreeView, targetLabel: string): LandPlan {
  const a = ov.agent(agent);
  if (Object.keys(a.conflicts ?? {}).length > 0) {
    throw new OverlayError(`${agent} has unresolved conflicts (${Object.keys(a.conflicts!).join(', ')}); resolve them first (cowfs conflicts ${agent})`);
  }
  const headLayer = ov.registry.commitLayer(a.head);
  const changes = changedPaths(ov.commitView(a.base), ov.commitView(a.head), ov.blobs);
  const plan: LandPlan = { agent, commit: a.head, paths: changes.map((c) => c.path), items: [], conflicts: [] };
  const labels = { ours: `${agent}@${a.head}`, base: `${agent}'s base`, theirs: targetLabel };
  let deleted: Map<string, number> | undefined;
  for (const c of changes) {
    const ours = nodeOf(c.after, ov);
    let base = nodeOf(c.before, ov);
    const own = headLayer.get(c.path);
    if (a.parent === null && own?.kind === 'file') {
      // baseHash null: no file was there when the agent made this one (a directory it removed may have been).
      base = own.baseHash === null ? (base?.kind === 'file' ? null : base)
        : { kind: 'file', bytes: ov.blobs.get(own.baseHash), mode: base?.kind === 'file' ? base.mode : own.mode, ino: own.ino, blob: own.baseHash };
    }
    const there = target.lookup(c.path);
    if (a.parent === null && ours === null && there?.src === 'disk' && there.node.kind !== 'dir') {
      const w = headLayer.probe(c.path);
      deleted ??= deletionTimes(ov.log, agent, ov.registry.commit(a.head).seq);
      // What hides the path: a whiteout, or above it a directory made again (opaque) or a file in
      // the directory's place: each came after the agent's deletion there.
      const hides = w && (w.entry.kind === 'whiteout' || (w.at !== c.path && (w.entry.kind !== 'dir' || w.entry.opaque)));
      const at = hides ? deleted.get(w.at) : undefined;
      if (at !== undefined && Math.floor(there.node.stat.ctimeMs) > at) {
        plan.conflicts.push({ path: c.path, kind: 'delete-modify', hunks: [] });
        continue;
      }
    }
    const theirs = nodeOf(there, ov);
    if (sameNode(theirs, ours)) continue;
    if (sameNode(theirs, base)) {
      plan.items.push({ path: c.path, theirs, result: ours });
      continue;
    }
    if (sameNode(ours, base)) continue;
    if (ours?.kind === 'dir' && theirs?.kind === 'dir') continue;
    const fileOrNone = (n: Node) => n === null || n.kind === 'file';
    if (!fileOrNone(base) || !fileOrNone(ours) || !fileOrNone(theirs)) {
      plan.conflicts.push({ path: c.path, kind: 'type', hunks: [] });
      continue;
    }
    const bytes = (n: Node) => (n?.kind === 'file' ? n.bytes : null);
    const m = mergeFiles(bytes(base), bytes(ours), bytes(theirs), { labels });
    if (!m.clean) {
      plan.conflicts.push({
        path: c.path, kind: m.conflict?.kind ?? 'content',
        hunks: m.hunks.map((h) => ({ line: h.line, ours: h.ours.text, base: h.base.text, theirs: h.theirs.text })),
      });
      continue;
    }
    const ino = (ours ?? theirs)!.ino;
    plan.items.push({
      path: c.path, theirs,
      result: m.content === null ? null : { kind: 'file', bytes: m.content, mode: mergedMode(base, ours, theirs), ino },
    });
  }
  return plan;
}

/** The refusal of a landing that conflicts: every path, and the hunks of text conflicts. */
export function conflictMessage(plan: LandPlan, into: string): string {
  const lines = [`cannot land ${plan.agent} into ${into}: ${plan.conflicts.length} path(s) conflict with what is there now; nothing was written`];
  const width = Math.max(plan.agent.length, into.length, 'base'.length);
  for (const c of plan.conflicts) {
    lines.push(`  ${c.path} (${c.kind} conflict)`);
    for (const h of c.hunks) {
      lines.push(`    at line ${h.line}:`);
      for (const [who, text] of [[plan.agent, h.ours], ['base', h.base], [into, h.theirs]] as const) {
        for (const l of text.replace(/\n$/, '').split('\n')) lines.push(`      ${who.padEnd(width)} | ${l}`);
      }
    }
  }
  return lines.join('\n');
}
