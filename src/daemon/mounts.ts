import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { MountAdapter } from '../fuse/adapters.js';
import type { MountHandle } from '../fuse/adapter-common.js';
import type { Overlay } from '../overlay/overlay.js';
import { abortConnection, connectionOf, fuseMountsAt, lazyUnmount } from '../fuse/mount-table.js';
import { changedPaths } from './changed-paths.js';
import { mountSource } from './protocol.js';
import { WorkspaceChanges } from './workspace-changes.js';
import { ApiError } from './errors.js';
import { CHECK_MS, DAEMON_KERNEL_NODES, mountsToDrop } from './kernel-cache-budget.js';

/** A mount (its mountpoint given) or an unmount of an agent, asked for and not yet done. */
interface Request {
  mountpoint?: string;
  forRun?: boolean;
  done: Promise<void>;
}

/** The agents' FUSE mounts held by this daemon. */
export class MountManager {
  /** `droppedAt`: when it was last asked to drop its kernel cache (keepKernelCacheBudget). */
  private readonly live = new Map<string, { mountpoint: string; forRun: boolean; handle: MountHandle; droppedAt: number }>();
  /**
   * Per agent, its mounts and unmounts asked for and not yet done, oldest first: each starts once the
   * one before it settled, so an agent ends as its last request says (see `mount`, `unmount`).
   */
  private readonly queues = new Map<string, Request[]>();
  /** Set by `unmountAll`: a mount asked for after it would be left behind. */
  private closing = false;
  private readonly onDisk: WorkspaceChanges;
  private readonly budgetTimer: NodeJS.Timeout;

  constructor(private readonly overlay: Overlay, private readonly adapter: MountAdapter, private readonly log: Logger) {
    this.onDisk = new WorkspaceChanges(overlay.workspace, log);
    this.budgetTimer = setInterval(() => this.keepKernelCacheBudget(), CHECK_MS).unref();
  }

  /** The idlest mounts drop their kernel caches while the daemon holds more node ids than `max` (kernel-cache-budget.ts). */
  keepKernelCacheBudget(max = DAEMON_KERNEL_NODES, now = Date.now()): string[] {
    const mounts = [...this.live].filter(([, m]) => m.handle.dropKernelCache).map(([agent, m]) => {
      const st = m.handle.stats();
      return { agent, m, nodes: st.nodes ?? 0, lastRequestAt: st.lastRequestAt ?? 0, droppedAt: m.droppedAt };
    });
    const dropped = mountsToDrop(mounts, max, now).map((i) => mounts[i]!);
    const cwds = dropped.length > 0 ? workingDirectories() : [];
    for (const { agent, m, nodes } of dropped) {
      // A run's processes see the mount at the workspace's own path.
      const roots = m.forRun ? [m.mountpoint, this.overlay.workspace.root] : [m.mountpoint];
      const entries = m.handle.dropKernelCache!(topNamesHolding(cwds, roots));
      m.droppedAt = now;
      this.log.info({ agent, nodes, entries }, 'idle mount: kernel cache dropped (node budget)');
    }
    return dropped.map(({ agent }) => agent);
  }

  /**
   * What changes an agent's tree without a request through its mount: its
   * own events caused elsewhere (a rebase, a resolve…; the adapter ignores
   * those of its own requests) and any change on disk in the workspace (a
   * superset: paths the agent overrides only cost a cache miss), and the
   * paths announced for a change that then failed (what the kernel held
   * there is let go as after a change).
   */
  private watchChanges(agent: string, listener: (paths: readonly string[]) => void): () => void {
    const offLog = this.overlay.log.subscribe((ev) => {
      if (ev.agent !== agent || this.overlay.tree(agent).ingesting) return;
      const paths = changedPaths(ev, this.overlay);
      if (paths.length > 0) listener(paths);
    });
    const offDisk = this.onDisk.subscribe(listener);
    const offAbandoned = this.overlay.tree(agent).onAbandonedChange(listener);
    return () => {
      offLog();
      offDisk();
      offAbandoned();
    };
  }

  /** Every change on disk in the workspace (one watcher for the mounts and the workspace rebase). */
  watchDisk(listener: (paths: readonly string[]) => void): () => void {
    return this.onDisk.subscribe(listener);
  }

  mountpointOf(agent: string): string | undefined {
    return this.live.get(agent)?.mountpoint;
  }

  /** Whether the agent's mount uses the kernel's writeback cache (undefined: not mounted). */
  writeCacheOf(agent: string): boolean | undefined {
    return this.live.get(agent)?.handle.writeback;
  }

  /** Resolves once every mount's kernel has been told of the changes announced so far (MountHandle.notified). */
  async notified(): Promise<void> {
    await Promise.all([...this.live.values()].map((m) => m.handle.notified()));
  }

  /** Is the agent's mount one that `cowfs run` made (not remembered across restarts)? */
  isRunMount(agent: string): boolean {
    return this.live.get(agent)?.forRun === true;
  }

  /** Every mountpoint in use, those being mounted or waiting to be included (a sandbox hides them all). */
  get mountpoints(): string[] {
    const all = new Set([...this.live.values()].map((m) => m.mountpoint));
    for (const r of [...this.queues.values()].flat()) if (r.mountpoint) all.add(r.mountpoint);
    return [...all];
  }

  get count(): number {
    return this.live.size;
  }

  /**
   * The agent's last request under way or waiting, if any: whoever decides on an agent's mount (is it
   * mounted? at what?) waits for `idle` first, then decides without awaiting.
   */
  pendingFor(agent: string): Promise<void> | undefined {
    return this.queues.get(agent)?.at(-1)?.done;
  }

  /** Resolves once no mount or unmount of the agent is under way or waiting (whether they succeeded or not). */
  async idle(agent: string): Promise<void> {
    for (let p = this.pendingFor(agent); p; p = this.pendingFor(agent)) await p.catch(() => undefined);
  }

  /** Queues `run` after the agent's requests before it; it is pending from now on. */
  private enqueue(agent: string, request: Omit<Request, 'done'>, run: () => Promise<void>): Promise<void> {
    const queue = this.queues.get(agent) ?? [];
    this.queues.set(agent, queue);
    const before = queue.at(-1)?.done.catch(() => undefined) ?? Promise.resolve();
    const entry = { ...request } as Request;
    entry.done = before.then(run).finally(() => {
      queue.splice(queue.indexOf(entry), 1);
      if (queue.length === 0) this.queues.delete(agent);
    });
    queue.push(entry);
    return entry.done;
  }

  /**
   * `forRun`: a mount made for `cowfs run` in the state directory (STATE/mnt/AGENT), where a
   * user's mountpoint is refused; it is not remembered, so a restart does not bring it back.
   * A request for a mount under way at the same mountpoint joins it; at another, it is refused.
   */
  mount(agent: string, mountpoint: string, opts: { forRun?: boolean } = {}): Promise<void> {
    const mp = path.resolve(mountpoint);
    const forRun = opts.forRun === true;
    if (this.closing) return Promise.reject(new ApiError('busy', 'the daemon is stopping'));
    const last = this.queues.get(agent)?.at(-1);
    if (last?.mountpoint !== undefined) {
      if (last.mountpoint === mp && last.forRun === forRun) return last.done;
      return Promise.reject(new ApiError('busy', `agent ${agent} is being mounted at ${last.mountpoint}; unmount it first`));
    }
    return this.enqueue(agent, { mountpoint: mp, forRun }, async () => {
      const current = this.live.get(agent);
      if (current) {
        if (current.mountpoint === mp) return;
        throw new ApiError('busy', `agent ${agent} is already mounted at ${current.mountpoint}; unmount it first`);
      }
      this.checkMountpoint(agent, mp, forRun);
      await this.attach(agent, mp, forRun);
    });
  }

  private async attach(agent: string, mp: string, forRun: boolean): Promise<void> {
    const tree = this.overlay.tree(agent);
    const source = mountSource(agent, this.overlay.stateDir);
    // The daemon must never read its own mounts: hide any inside the workspace.
    this.overlay.workspace.hide(mp);
    try {
      const handle = await this.adapter.mount(mp, tree, {
        fsname: source,
        allowOther: true,
        writeback: this.overlay.settings.all().writeCache,
        logger: this.log,
        watchChanges: (listener) => this.watchChanges(agent, listener),
        watchBeforeChange: (listener) => tree.onBeforeChange(listener),
        watchSettle: (listener) => tree.onSettle(listener),
      });
      this.live.set(agent, { mountpoint: mp, forRun, handle, droppedAt: 0 });
    } catch (err) {
      this.overlay.workspace.unhide(mp);
      throw new ApiError('internal', `cannot mount ${agent} at ${mp}: ${(err as Error).message}`);
    }
    if (!forRun) this.overlay.setMountpoint(agent, mp);
    this.log.info({ agent, mountpoint: mp, forRun }, 'mounted');
  }

  /**
   * `forget`: the agent is not remounted at the next start (an explicit unmount, not a shutdown).
   * Takes effect after the agent's requests before it (a mount under way or waiting is mounted, then
   * undone) and before any after it: a mount asked for meanwhile does not join one it is to undo.
   */
  unmount(agent: string, forget: boolean): Promise<void> {
    return this.enqueue(agent, {}, () => this.detach(agent, forget));
  }

  private async detach(agent: string, forget: boolean): Promise<void> {
    const m = this.live.get(agent);
    if (m) {
      const open = this.overlay.tree(agent).openCount;
      if (open > 0) this.log.warn({ agent, open }, 'unmounting with files still open');
      await m.handle.unmount();
      this.live.delete(agent);
      this.overlay.workspace.unhide(m.mountpoint);
      this.log.info({ agent, mountpoint: m.mountpoint }, 'unmounted');
    }
    // Before the unmount counts as done: a mount after it remembers its own mountpoint after this.
    if (forget && this.overlay.registry.find(agent)) this.overlay.setMountpoint(agent, null);
  }

  /** At shutdown: every mount goes, those still being made or waiting too (each is unmounted once made). */
  async unmountAll(): Promise<void> {
    this.closing = true;
    clearInterval(this.budgetTimer);
    for (const agent of new Set([...this.live.keys(), ...this.queues.keys()])) {
      try {
        await this.unmount(agent, false);
      } catch (err) {
        this.log.error({ agent, err }, 'unmount failed');
      }
    }
    await this.onDisk.close();
  }

  /** At start: free mountpoints a killed daemon left behind, then remount the agents that were mounted. */
  async restore(): Promise<void> {
    for (const a of this.overlay.agents()) {
      if (!a.mountpoint) continue;
      for (const stale of fuseMountsAt(a.mountpoint).reverse()) {
        // Left by a killed daemon: abort its connection (frees anything stuck on it), then detach it.
        this.log.warn({ agent: a.name, mountpoint: a.mountpoint }, 'cleaning a stale mount');
        await abortConnection(connectionOf(stale));
        await lazyUnmount(stale.mountpoint);
      }
      try {
        await this.mount(a.name, a.mountpoint);
      } catch (err) {
        this.log.error({ agent: a.name, err: (err as Error).message }, 'could not remount');
      }
    }
  }

  /**
   * The path is stat'ed last, once it is known not to be in one of our own mounts: the daemon
   * reading its own mount deadlocks (libfuse 2 answers in this very thread) as soon as the
   * kernel's cached attributes of it have expired, which a slow machine made happen.
   */
  /**
   * What a mountpoint must be: checked when the mount's turn comes, and before a new agent is made
   * for it (a typo would otherwise log the agent made and removed). Nothing mounted there, and no
   * mount of ours above or below it, before anything reads it: the daemon reading its own mount
   * deadlocks.
   */
  checkMountpoint(agent: string, mountpoint: string, forRun: boolean): void {
    const mp = path.resolve(mountpoint);
    if (fuseMountsAt(mp).length > 0) throw new ApiError('busy', `mountpoint ${mp} is busy: something is already mounted there`);
    // Other agents' mounts, those waiting their turn too (the agent's own earlier requests are done by now).
    const others: [string, string][] = [...this.live].map(([a, m]) => [a, m.mountpoint]);
    for (const [a, queue] of this.queues) if (a !== agent) for (const r of queue) if (r.mountpoint) others.push([a, r.mountpoint]);
    for (const [other, at] of others) {
      if (inside(mp, at) || inside(at, mp)) {
        throw new ApiError('busy', `mountpoint ${mp} overlaps the mount of agent ${other} at ${at}`);
      }
    }
    const ws = this.overlay.workspace.root;
    const state = this.overlay.stateDir;
    if (inside(ws, mp)) throw new ApiError('bad_request', `mountpoint ${mp} would hide the workspace ${ws}`);
    if (inside(mp, state) && !forRun) throw new ApiError('bad_request', `mountpoint ${mp} is inside the state directory`);
    const st = fs.statSync(mp, { throwIfNoEntry: false });
    if (!st) throw new ApiError('not_found', `mountpoint ${mp} does not exist; create it first (mkdir -p ${mp})`);
    if (!st.isDirectory()) throw new ApiError('bad_request', `mountpoint ${mp} is not a directory`);
    // Every tree hides a mountpoint inside the workspace (the daemon must not read its own mount):
    // mounting over a project directory would take its files away from every agent.
    if (inside(mp, ws) && !inside(mp, state) && fs.readdirSync(mp).length > 0) {
      throw new ApiError('bad_request', `mountpoint ${mp} is inside the workspace and not empty: every agent would lose what it holds`);
    }
  }
}

/** Whether path `a` is `b` or lies below it. */
function inside(a: string, b: string): boolean {
  return a === b || a.startsWith(`${b}/`);
}

/** Every process's working directory, as /proc shows it: readlink only, nothing reads a mount. */
function workingDirectories(): string[] {
  const cwds: string[] = [];
  for (const pid of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      cwds.push(fs.readlinkSync(`/proc/${pid}/cwd`));
    } catch {
      // gone, or not ours to read
    }
  }
  return cwds;
}

/** The first names below any of `roots` on the way to the directories `cwds`. */
function topNamesHolding(cwds: readonly string[], roots: readonly string[]): Set<string> {
  const names = new Set<string>();
  for (const cwd of cwds) {
    for (const root of roots) {
      if (cwd.startsWith(`${root}/`)) names.add(cwd.slice(root.length + 1).split('/')[0]!);
    }
  }
  return names;
}
