import path from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import type { Logger } from 'pino';
import type { Workspace } from '../overlay/workspace.js';

/**
 * Every change on disk in the workspace, as paths relative to its root, for
 * mounts whose kernel caches last until invalidated (libfuse 3): a path an
 * agent never touched shows the workspace file itself, so a change there is
 * a change of the agent's tree. Started with the first subscriber; hidden
 * paths (the state directory, mountpoints inside the workspace: reading
 * them from the daemon would deadlock it) are never read.
 */
export class WorkspaceChanges {
  private watcher: FSWatcher | undefined;
  private readonly listeners = new Set<(paths: readonly string[]) => void>();

  constructor(private readonly workspace: Workspace, private readonly log: Logger) {}

  subscribe(fn: (paths: readonly string[]) => void): () => void {
    this.listeners.add(fn);
    this.start();
    return () => this.listeners.delete(fn);
  }

  async close(): Promise<void> {
    this.listeners.clear();
    await this.watcher?.close();
    this.watcher = undefined;
  }

  private relative(abs: string): string | null {
    const rel = path.relative(this.workspace.root, abs).split(path.sep).join('/');
    return rel.startsWith('..') || path.isAbsolute(rel) ? null : rel;
  }

  private start(): void {
    if (this.watcher) return;
    this.watcher = watch(this.workspace.root, {
      ignoreInitial: true,
      ignored: (abs: string) => {
        const rel = this.relative(abs);
        return rel === null || (rel !== '' && this.workspace.isHidden(rel));
      },
    });
    this.watcher.on('all', (_event: string, abs: string) => {
      const rel = this.relative(abs);
      if (rel === null || rel === '') return;
      for (const fn of this.listeners) fn([rel]);
    });
    this.watcher.on('error', (err) => this.log.warn({ err: String(err) }, 'workspace change watcher error'));
  }
}
