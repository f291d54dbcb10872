import fs from 'node:fs';
import type { Logger } from 'pino';
import { join } from '../overlay/paths.js';
import type { Workspace } from '../overlay/workspace.js';

/**
 * Every change on disk in the workspace, as paths relative to its root, for
 * mounts whose kernel caches last until invalidated (libfuse 3): a path an
 * agent never touched shows the workspace file itself, so a change there is
 * a change of the agent's tree. Started with the first subscriber.
 *
 * One inotify watch per directory (fs.watch), nothing per file: a
 * file-tracking watcher (chokidar) cost ~85 MiB of daemon memory on an
 * 8,000-file workspace. Hidden paths (the state directory, mountpoints
 * inside the workspace: reading them from the daemon would deadlock it)
 * are never read, and symlinks are never followed.
 */
export class WorkspaceChanges {
  private readonly watchers = new Map<string, fs.FSWatcher>();
  private readonly listeners = new Set<(paths: readonly string[]) => void>();
  private started = false;
  private closed = false;

  constructor(private readonly workspace: Workspace, private readonly log: Logger) {}

  subscribe(fn: (paths: readonly string[]) => void): () => void {
    this.listeners.add(fn);
    if (!this.started) {
      this.started = true;
      this.watchTree('').catch((err: Error) => this.log.warn({ err: err.message }, 'workspace change watcher failed'));
    }
    return () => this.listeners.delete(fn);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.listeners.clear();
    for (const w of this.watchers.values()) w.close();
    this.watchers.clear();
  }

  private hidden(rel: string): boolean {
    return rel !== '' && this.workspace.isHidden(rel);
  }

  /**
   * Watches `rel` and every real directory below it (asynchronously: the daemon keeps answering).
   * `appeared`: a directory made after the watching started. What was written in it before its
   * watch was set is reported as changed, since no inotify event told of it.
   */
  private async watchTree(rel: string, appeared = false): Promise<void> {
    if (this.closed || this.watchers.has(rel) || this.hidden(rel)) return;
    const abs = this.workspace.realPath(rel);
    try {
      const w = fs.watch(abs, { persistent: false }, (_event, name) => this.changed(rel, name === null ? null : String(name)));
      w.on('error', () => this.unwatch(rel));
      this.watchers.set(rel, w);
    } catch (err) {
      // Gone already or not readable is expected; anything else (ENOSPC: out of inotify watches) leaves it stale.
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR' && code !== 'EACCES') this.log.warn({ dir: rel, code }, 'cannot watch a workspace directory: changes there reach the mounts only when their caches expire');
      return;
    }
    let entries: fs.Dirent[];
    try {
      entries = await fs.promises.readdir(abs, { withFileTypes: true });
    } catch {
      return;
    }
    if (appeared && entries.length > 0) {
      const paths = entries.map((e) => join(rel, e.name)).filter((p) => !this.hidden(p));
      for (const fn of this.listeners) fn(paths);
    }
    for (const e of entries) if (e.isDirectory()) await this.watchTree(join(rel, e.name), appeared);
  }

  private unwatch(rel: string): void {
    const prefix = `${rel}/`;
    for (const [d, w] of this.watchers) {
      if (d === rel || d.startsWith(prefix)) {
        w.close();
        this.watchers.delete(d);
      }
    }
  }

  private changed(dir: string, name: string | null): void {
    // No name: the kernel's queue overflowed or the directory itself changed.
    const rel = name === null ? dir : join(dir, name);
    if (this.hidden(rel)) return;
    for (const fn of this.listeners) fn([rel]);
    if (name === null) return;
    fs.lstat(this.workspace.realPath(rel), (err, st) => {
      if (err) this.unwatch(rel);
      else if (st.isDirectory()) void this.watchTree(rel, true);
    });
  }
}
