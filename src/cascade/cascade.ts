import type { ConflictRecord, CowEvent } from '../events/types.js';
import { settleLanded } from '../land/settle.js';
import { OverlayError, type AgentRecord } from '../overlay/registry.js';
import type { Overlay, Resolution } from '../overlay/overlay.js';
import { TreeView } from '../overlay/view.js';
import { entryFingerprint, inoPerPath, planRebase, type RebaseContext } from './rebase.js';

export interface CascadeReport {
  /** Agents rebased onto their parent's new head, in order. */
  rebased: string[];
  /** Agents that stopped at a conflict (their children were not rebased). */
  conflicted: { agent: string; paths: string[] }[];
  /** Agents not rebased because they still had unresolved conflicts. */
  paused: string[];
}

/**
 * A parent's new head reaches its descendants: WORKTREE_CHANGED to each
 * direct child, which is rebased (three-way, per path) onto it, and so on
 * down the tree, depth first. An agent with unresolved conflicts is not
 * rebased (and neither are its children) until they are resolved.
 */
/** What the start's resumption of interrupted cascades did; `failed`: agents left behind, with why. */
export type ResumeReport = CascadeReport & { failed: { agent: string; error: string }[] };

export class Cascade {
  constructor(private readonly overlay: Overlay) {}

  /** After `agent` committed: rebase its descendants. */
  fromCommit(agent: string): CascadeReport {
    const report: CascadeReport = { rebased: [], conflicted: [], paused: [] };
    for (const child of this.overlay.registry.children(agent)) this.rebaseDown(child.name, report);
    return report;
  }

  /**
   * Resolves one conflicted path with ours, theirs or given content; when
   * the agent has no conflict left, its head takes the resolution and the
   * cascade resumes below it.
   */
  resolve(agent: string, path: string, how: 'ours' | 'theirs' | 'file', content?: Buffer): CascadeReport {
    const a = this.overlay.agent(agent);
    const c = a.conflicts?.[path];
    if (!c) throw new OverlayError(`${agent} has no conflict at ${path} (see \`cowfs conflicts ${agent}\`)`);
    let chosen: Resolution;
    if (how === 'file') chosen = { content: content! };
    else {
      const [target, blob, mode] = [c.targets?.[how] ?? null, c[how], c.modes?.[how] ?? undefined];
      if (target === null && blob === null) {
        // That side deleted the path or made it a directory. Ours, a directory, is what the merge left in place; theirs is what lies below.
        if (how === 'ours' && c.kind === 'type') {
          this.overlay.markResolved(agent, path, how);
          return this.resumeIfClear(agent);
        }
        chosen = how === 'ours' ? 'deleted' : 'below';
      } else chosen = target !== null ? { target } : { content: this.overlay.blobs.get(blob!), mode };
    }
    this.overlay.resolveConflict(agent, path, chosen, how);
    return this.resumeIfClear(agent);
  }

  /**
   * A commit of a conflicted agent resolves the paths it dealt with: a
   * text file written without markers; any other conflict (binary,
   * delete/modify, mode, symlink, type) once the path holds something else
   * than what the merge left there, so a commit that never looked at it
   * does not settle it silently.
   */
  afterCommitOf(agent: string): CascadeReport {
    const a = this.overlay.agent(agent);
    for (const [path, c] of Object.entries(a.conflicts ?? {})) {
      const e = this.overlay.tree(agent).layer.get(path);
      const dealtWith = c.kind === 'content' || c.left === undefined
        ? e?.kind !== 'file' || !hasMarkers(this.overlay.blobs.get(e.hash))
        : entryFingerprint(e) !== c.left;
      if (dealtWith) this.overlay.markResolved(agent, path, 'commit');
    }
    return this.resumeIfClear(agent);
  }

  /**
   * At the daemon's start: a cascade cut short by a crash (the parent's commit made, some of its
   * descendants not yet rebased) goes on, parents first. An agent paused on its own conflicts
   * stays paused, as it would have.
   */
  resumeInterrupted(): ResumeReport {
    const report: ResumeReport = { rebased: [], conflicted: [], paused: [], failed: [] };
    const visit = (agent: AgentRecord) => {
      for (const child of this.overlay.registry.children(agent.name)) {
        const c = this.overlay.agent(child.name);
        try {
          if (c.base !== agent.head && Object.keys(c.conflicts ?? {}).length === 0) {
            // Cut short between its landing into the parent and its settling there: settled as the landing would.
            const landed = this.landedUnsettled(c.name, agent.name);
            if (landed) {
              const r = settleLanded(this.overlay, this, c.name, landed.paths, landed.parentCommit, landed.commit);
              report.rebased.push(c.name, ...r.rebased);
              report.conflicted.push(...r.conflicted);
              report.paused.push(...r.paused);
            } else {
              this.rebaseDown(c.name, report);
            }
          }
        } catch (err) {
          // One agent that cannot be rebased (a lost blob, a full disk) must not keep the daemon from
          // starting: it stays behind, as before, and its parent's next commit tries again.
          report.failed.push({ agent: c.name, error: (err as Error).message });
        }
        visit(this.overlay.agent(c.name));
      }
    };
    for (const root of this.overlay.agents()) if (root.parent === null) visit(root);
    return report;
  }

  /** The agent's landing into `parent`, when no rebase followed it (a crash came in between). */
  private landedUnsettled(agent: string, parent: string): Extract<CowEvent, { type: 'AGENT_LANDED' }> | undefined {
    let last: CowEvent | undefined;
    for (const ev of this.overlay.log.byAgent(agent)) if (ev.type === 'AGENT_LANDED' || ev.type === 'AGENT_REBASED') last = ev;
    return last?.type === 'AGENT_LANDED' && last.into === parent ? last : undefined;
  }

  /** With no conflict left: catch up with a parent that moved on meanwhile, then cascade below. */
  private resumeIfClear(agent: string): CascadeReport {
    const report: CascadeReport = { rebased: [], conflicted: [], paused: [] };
    const a = this.overlay.agent(agent);
    if (Object.keys(a.conflicts ?? {}).length > 0) {
      report.paused.push(agent);
      return report;
    }
    const parent = a.parent === null ? null : this.overlay.agent(a.parent);
    if (parent && a.base !== parent.head) this.rebaseDown(agent, report);
    else for (const child of this.overlay.registry.children(agent)) this.rebaseDown(child.name, report);
    return report;
  }

  private rebaseDown(name: string, report: CascadeReport): void {
    const child = this.overlay.agent(name);
    const parent = this.overlay.agent(child.parent!);
    if (child.base === parent.head) return;
    // A parent paused on a conflict has markers in its head: its children wait for its resolution.
    if (Object.keys(parent.conflicts ?? {}).length > 0) return;
    this.overlay.record(name, { type: 'WORKTREE_CHANGED', parent: parent.name, from: child.base, to: parent.head });
    if (Object.keys(child.conflicts ?? {}).length > 0) {
      report.paused.push(name);
      return;
    }
    const rebased = this.rebaseOne(child, parent);
    report.rebased.push(name);
    const paths = Object.keys(rebased.conflicts ?? {});
    if (paths.length > 0) {
      report.conflicted.push({ agent: name, paths });
      return;
    }
    for (const grandchild of this.overlay.registry.children(name)) this.rebaseDown(grandchild.name, report);
  }

  private rebaseOne(child: AgentRecord, parent: AgentRecord): AgentRecord {
    const ov = this.overlay;
    ov.tree(child.name).settle();
    const view = (commit: number | null) => new TreeView(ov.registry.chainOf(commit), ov.workspace);
    const ctx: RebaseContext = {
      before: view(child.base), after: view(parent.head), from: child.base, to: parent.head, blobs: ov.blobs,
      labels: { ours: child.name, base: `${parent.name}@${child.base ?? 'workspace'}`, theirs: `${parent.name}@${parent.head}` },
      refine: ov.settings.all().refine, merges: new Map(), dirIno: inoPerPath(() => ov.allocIno()),
    };
    const work = planRebase(ov.tree(child.name).layer, ctx);
    const head = planRebase(ov.registry.commitLayer(child.head), ctx);
    // The working tree's conflicts are the ones to resolve; the head's follow them.
    const conflicts: ConflictRecord[] = [...work.conflicts];
    for (const c of head.conflicts) if (!conflicts.some((w) => w.path === c.path)) conflicts.push(c);
    return ov.applyRebase(child.name, {
      base: parent.head, changes: work.changes, headChanges: head.changes,
      merged: work.merged, refined: work.refined, conflicts,
    });
  }
}

/** git's conflict marker at the start of a line. */
export function hasMarkers(content: Buffer): boolean {
  const s = content.toString('latin1');
  return /^<{7}( |$)/m.test(s) && /^>{7}( |$)/m.test(s);
}
