import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { MountAdapter } from '../fuse/adapters.js';
import type { Overlay } from '../overlay/overlay.js';
import { abortConnection, connectionOf, fuseMountsAt, lazyUnmount } from '../fuse/mount-table.js';
import { changedPaths } from './changed-paths.js';
import { mountSource } from './protocol.js';
import { WorkspaceChanges } from './workspace-changes.js';
import { ApiError } from './errors.js';

/** The agents' FUSE mounts held by this daemon. */
export class MountManager {
  private readonly live = new Map<string, { mountpoint: string; forRun: boolean; unmount(): Promise<void> }>();
  /** Mounts being made, and unmounts under way (see `pendingFor`). */
  private readonly mounting = new Map<string, { mountpoint: string; forRun: boolean; done: Promise<void> }>();
  private readonly unmounting = new Map<string, Promise<void>>();
  private readonly onDisk: WorkspaceChanges;

  constructor(private readonly overlay: Overlay, private readonly adapter: MountAdapter, private readonly log: Logger) {
    this.onDisk = new WorkspaceChanges(overlay.workspace, log);
  }

  /**
   * What changes an agent's tree without a request through its mount: its
   * own events caused elsewhere (a rebase, a resolve…; the adapter ignores
   * those of its own requests) and any change on disk in the workspace (a
   * superset: paths the agent overrides only cost a cache miss).
   */
  private watchChanges(agent: string, listener: (paths: readonly string[]) => void): () => void {
    const offLog = this.overlay.log.subscribe((ev) => {
      if (ev.agent !== agent || this.overlay.tree(agent).ingesting) return;
      const paths = changedPaths(ev, this.overlay);
      if (paths.length > 0) listener(paths);
    });
    const offDisk = this.onDisk.subscribe(listener);
    return () => {
      offLog();
      offDisk();
    };
  }

  mountpointOf(agent: string): string | undefined {
    return this.live.get(agent)?.mountpoint;
  }

  /** Is the agent's mount one that `cowfs run` made (not remembered across restarts)? */
  isRunMount(agent: string): boolean {
    return this.live.get(agent)?.forRun === true;
  }

  /** Every mountpoint in use, those being mounted included (a sandbox hides them all). */
  get mountpoints(): string[] {
    return [...this.live.values(), ...this.mounting.values()].map((m) => m.mountpoint);
  }

  get count(): number {
    return this.live.size;
  }

  /**
   * A mount or unmount of the agent under way, if any. Mounting awaits the
   * adapter, and two requests for one agent would otherwise both pass the
   * "already mounted?" check and make two FUSE mounts of it: whoever checks an
   * agent's mount first waits for `idle`, then decides without awaiting.
   */
  pendingFor(agent: string): Promise<void> | undefined {
    return this.mounting.get(agent)?.done ?? this.unmounting.get(agent);
  }

  /** Resolves once no mount or unmount of the agent is under way (whether they succeeded or not). */
  async idle(agent: string): Promise<void> {
    for (let p = this.pendingFor(agent); p; p = this.pendingFor(agent)) await p.catch(() => undefined);
  }

  /**
   * `forRun`: a mount made for `cowfs run` in the state directory (STATE/mnt/AGENT), where a
   * user's mountpoint is refused; it is not remembered, so a restart does not bring it back.
   * A request for a mount under way at the same mountpoint joins it; at another, it is refused.
   */
  async mount(agent: string, mountpoint: string, opts: { forRun?: boolean } = {}): Promise<void> {
    const mp = path.resolve(mountpoint);
    for (let p = this.unmounting.get(agent); p; p = this.unmounting.get(agent)) await p.catch(() => undefined);
    // From here to `mounting.set`, nothing awaits: no other request can slip in between.
    const pending = this.mounting.get(agent);
    if (pending) {
      if (pending.mountpoint === mp && pending.forRun === (opts.forRun === true)) return pending.done;
      throw new ApiError('busy', `agent ${agent} is being mounted at ${pending.mountpoint}; unmount it first`);
    }
    const current = this.live.get(agent);
    if (current) {
      if (current.mountpoint === mp) return;
      throw new ApiError('busy', `agent ${agent} is already mounted at ${current.mountpoint}; unmount it first`);
    }
    this.checkMountpoint(mp, opts.forRun === true);
    const done = this.attach(agent, mp, opts.forRun === true).finally(() => this.mounting.delete(agent));
    this.mounting.set(agent, { mountpoint: mp, forRun: opts.forRun === true, done });
    return done;
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
        logger: this.log,
        watchChanges: (listener) => this.watchChanges(agent, listener),
      });
      this.live.set(agent, { mountpoint: mp, forRun, unmount: () => handle.unmount() });
    } catch (err) {
      this.overlay.workspace.unhide(mp);
      throw new ApiError('internal', `cannot mount ${agent} at ${mp}: ${(err as Error).message}`);
    }
    if (!forRun) this.overlay.setMountpoint(agent, mp);
    this.log.info({ agent, mountpoint: mp, forRun }, 'mounted');
  }

  /** `forget`: the agent is not remounted at the next start (an explicit unmount, not a shutdown). */
  async unmount(agent: string, forget: boolean): Promise<void> {
    // A mount under way finishes first, so it is not left behind unnoticed.
    await this.idle(agent);
    const m = this.live.get(agent);
    if (m) {
      const open = this.overlay.tree(agent).openCount;
      if (open > 0) this.log.warn({ agent, open }, 'unmounting with files still open');
      const done = m.unmount().finally(() => this.unmounting.delete(agent));
      this.unmounting.set(agent, done);
      await done;
      this.live.delete(agent);
      this.overlay.workspace.unhide(m.mountpoint);
      this.log.info({ agent, mountpoint: m.mountpoint }, 'unmounted');
    }
    if (forget && this.overlay.registry.find(agent)) this.overlay.setMountpoint(agent, null);
  }

  async unmountAll(): Promise<void> {
    for (const agent of [...this.live.keys()]) {
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
  private checkMountpoint(mp: string, forRun: boolean): void {
    if (fuseMountsAt(mp).length > 0) throw new ApiError('busy', `mountpoint ${mp} is busy: something is already mounted there`);
    const ws = this.overlay.workspace.root;
    const state = this.overlay.stateDir;
    const inside = (a: string, b: string) => a === b || a.startsWith(`${b}/`);
    if (inside(ws, mp)) throw new ApiError('bad_request', `mountpoint ${mp} would hide the workspace ${ws}`);
    if (inside(mp, state) && !forRun) throw new ApiError('bad_request', `mountpoint ${mp} is inside the state directory`);
    for (const [agent, m] of [...this.live, ...this.mounting]) {
      if (inside(mp, m.mountpoint) || inside(m.mountpoint, mp)) {
        throw new ApiError('busy', `mountpoint ${mp} overlaps the mount of agent ${agent} at ${m.mountpoint}`);
      }
    }
    const st = fs.statSync(mp, { throwIfNoEntry: false });
    if (!st) throw new ApiError('not_found', `mountpoint ${mp} does not exist; create it first (mkdir -p ${mp})`);
    if (!st.isDirectory()) throw new ApiError('bad_request', `mountpoint ${mp} is not a directory`);
  }
}
