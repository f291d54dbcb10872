import path from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import type { Logger } from 'pino';
import { deletionTimes } from '../events/deletions.js';
import type { Overlay } from '../overlay/overlay.js';
import { TreeView } from '../overlay/view.js';
import type { Cascade } from './cascade.js';
import { inoPerPath, lowerPath, planWorkspaceRebase, type RebaseContext } from './rebase.js';

/** Changes on disk are gathered this long, so a `git pull` is one rebase, not hundreds. */
const SETTLE_MS = 150;

/** Every change on disk in the workspace, as paths (the daemon's one watcher of the whole tree). */
export type WatchDisk = (listener: (paths: readonly string[]) => void) => () => void;

/**
 * Root agents sit on the live workspace. Paths they never touched show a
 * change on disk at once; the paths they materialized are watched, and a
 * change there triggers the same three-way rebase as a parent's commit
 * (base = what was copied up), then the cascade below the agents whose
 * head moved. A directory removed on disk that holds names an agent made
 * triggers it too: the rebase keeps the directory for them (as after a
 * parent's commit that removed it). So does a change inside a directory an
 * agent deleted: the rebase unfolds it, so what came since shows.
 */
export class WorkspaceWatcher {
  private readonly watcher: FSWatcher;
  private readonly pending = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private readonly unsubscribe: () => void;
  private readonly offDisk: (() => void) | undefined;

  constructor(private readonly overlay: Overlay, private readonly cascade: Cascade, private readonly log: Logger, watchDisk?: WatchDisk) {
    this.watcher = watch([], { ignoreInitial: true, atomic: true });
    for (const event of ['add', 'change', 'unlink'] as const) {
      this.watcher.on(event, (abs: string) => this.queue(abs));
    }
    this.watcher.on('error', (err) => this.log.warn({ err: String(err) }, 'workspace watcher error'));
    for (const a of overlay.agents()) {
      for (const layer of [overlay.tree(a.name).layer, overlay.registry.commitLayer(a.head)]) {
        for (const [p, e] of layer.entriesList()) if (e.kind === 'file' && e.baseHash !== null) this.watchPath(lowerPath(layer, p));
      }
    }
    // Materializing a file from the workspace (a write, or an atomic save renamed over it) puts it under watch.
    this.unsubscribe = overlay.log.subscribe((ev) => {
      const target = ev.type === 'put' || ev.type === 'truncate' ? ev.path : ev.type === 'move' ? ev.to : undefined;
      if (target === undefined || !('entry' in ev) || ev.entry.kind !== 'file' || ev.entry.baseHash === null) return;
      this.watchPath(lowerPath(overlay.tree(ev.agent).layer, target));
    });
    this.offDisk = watchDisk?.((paths) => {
      for (const p of paths) if (this.concerns(p)) this.queuePath(p);
    });
  }

  /**
   * Whether a change on disk at `p` is one for an agent's working tree or head: it has names of
   * its own in directory `p` (kept if `p` goes), or `p` lies in a directory it deleted or made
   * again (opaque), which the rebase unfolds.
   */
  private concerns(p: string): boolean {
    const ov = this.overlay;
    return ov.agents().some((a) => [ov.tree(a.name).layer, ov.registry.commitLayer(a.head)].some((layer) => {
      if (!layer.namesIn(p)[Symbol.iterator]().next().done) return true;
      const above = layer.probeAbove(p)?.entry;
      return above?.kind === 'whiteout' || (above?.kind === 'dir' && above.opaque);
    }));
  }

  async close(): Promise<void> {
    this.unsubscribe();
    this.offDisk?.();
    clearTimeout(this.timer);
    await this.watcher.close();
  }

  /** Runs what is queued now (tests, shutdown). */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const changed = new Set(this.pending);
    this.pending.clear();
    if (changed.size === 0) return;
    try {
      this.rebaseOnto(changed);
    } catch (err) {
      this.log.error({ err, paths: [...changed] }, 'rebase onto the workspace failed');
    }
  }

  private watchPath(p: string | null): void {
    if (p !== null && !this.overlay.workspace.isHidden(p)) this.watcher.add(this.overlay.workspace.realPath(p));
  }

  private queue(abs: string): void {
    const rel = path.relative(this.overlay.workspace.root, abs).split(path.sep).join('/');
    if (rel.startsWith('..') || this.overlay.workspace.isHidden(rel)) return;
    this.queuePath(rel);
  }

  private queuePath(rel: string): void {
    this.pending.add(rel);
    this.timer ??= setTimeout(() => this.flush(), SETTLE_MS);
  }

  private rebaseOnto(changed: Set<string>): void {
    const ov = this.overlay;
    // Read from the log only when a deleted directory is reached.
    const deletedAt = (agent: string, to?: number) => {
      let times: Map<string, number> | undefined;
      return (p: string) => (times ??= deletionTimes(ov.log, agent, to)).get(p);
    };
    const moved: string[] = [];
    for (const a of ov.agents()) {
      const below = new TreeView(ov.registry.chainOf(a.base), ov.workspace);
      ov.tree(a.name).settle();
      const ctx: RebaseContext = {
        before: below, after: below, from: null, to: null, blobs: ov.blobs, refine: ov.settings.all().refine, dirIno: inoPerPath(() => ov.allocIno()),
        labels: { ours: a.name, base: 'workspace (when copied)', theirs: 'workspace (on disk now)' },
      };
      const work = planWorkspaceRebase(ov.tree(a.name).layer, below, changed, ctx, deletedAt(a.name));
      const head = planWorkspaceRebase(ov.registry.commitLayer(a.head), below, changed, ctx, deletedAt(a.name, ov.registry.commit(a.head).seq));
      if (work.changes.length === 0 && head.changes.length === 0 && work.conflicts.length === 0) continue;
      ov.applyRebase(a.name, {
        base: a.base, changes: work.changes, headChanges: head.changes,
        merged: work.merged, refined: work.refined, conflicts: work.conflicts,
      });
      this.log.info({ agent: a.name, merged: work.merged, conflicts: work.conflicts.map((c) => c.path) }, 'rebased onto the workspace');
      if (head.changes.length > 0) moved.push(a.name);
    }
    for (const name of moved) this.cascade.fromCommit(name);
  }
}
