/**
 * The daemon's side of `cowfs run`. A run session holds, for one sandbox:
 * the agent's mount (its own `cowfs mount` if it has one, else one made for
 * runs in STATE/mnt/AGENT and shared by every run of that agent) and a
 * socket in STATE/run/ that serves that agent alone (src/daemon/scope.ts),
 * owned by the sandbox's user. A session ends at `run.end`, or when the
 * connection that started it closes (a `cowfs run` killed with SIGKILL):
 * the socket goes, and the run mount with the agent's last session.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { abortConnection, connectionOf, fuseMountsUnder, lazyUnmount } from '../fuse/mount-table.js';
import { withAgent, type ApiContext, type Caller } from './api.js';
import { ApiError } from './errors.js';
import type { MountManager } from './mounts.js';
import type { Overlay } from '../overlay/overlay.js';
import { refuseRw } from '../sandbox/bwrap.js';
import type { RunSession } from './protocol.js';

/** Serves the API for one agent on a socket; resolves to what closes it. */
export type ScopedListen = (socket: string, agent: string) => Promise<() => Promise<void>>;

interface Session {
  agent: string;
  /** Did this session create the agent? Then a failed start removes it again. */
  created: boolean;
  socket: string;
  close: () => Promise<void>;
}

export class RunSessions {
  private readonly sessions = new Map<string, Session>();
  /** Sessions per agent whose mount was made for runs: the last one to end unmounts it. */
  private readonly runMountUsers = new Map<string, number>();

  constructor(
    private readonly stateDir: string,
    private readonly overlay: Overlay,
    private readonly mounts: MountManager,
    private readonly listen: ScopedListen,
    private readonly log: Logger,
  ) {}

  private get mntDir(): string {
    return path.join(this.stateDir, 'mnt');
  }

  private get socketDir(): string {
    return path.join(this.stateDir, 'run');
  }

  /** At start: sockets and run mounts left by a killed daemon (their sandboxes died with it). */
  async cleanStale(): Promise<void> {
    fs.rmSync(this.socketDir, { recursive: true, force: true });
    for (const m of fuseMountsUnder(`${this.mntDir}/`)) {
      this.log.warn({ mountpoint: m.mountpoint }, 'cleaning a stale run mount');
      await abortConnection(connectionOf(m));
      await lazyUnmount(m.mountpoint);
    }
  }

  /** `rw`: the paths the sandbox will open for writing, refused here before anything is created. */
  async start(ctx: ApiContext, p: { agent: string; parent: string | null; uid: number; gid: number; rw: string[] }, caller: Caller): Promise<RunSession> {
    const { agent } = p;
    const plan = { workspace: ctx.overlay.workspace.root, stateDir: this.stateDir, hide: this.mounts.mountpoints };
    for (const r of p.rw) {
      const why = refuseRw(r, plan);
      if (why) throw new ApiError('bad_request', why);
    }
    const id = randomBytes(8).toString('hex');
    let mountpoint = '';
    const socket = path.join(this.socketDir, `${id}.sock`);
    let close!: () => Promise<void>;
    // Inside withAgent: an agent created here is removed again if its mount or its socket fails.
    const created = await withAgent(ctx, agent, p.parent, async () => {
      mountpoint = await this.acquireMount(agent);
      try {
        fs.mkdirSync(this.socketDir, { recursive: true, mode: 0o700 });
        if (Buffer.byteLength(socket) > 107) throw new ApiError('bad_request', `the state directory path is too long for a run socket (${socket})`);
        close = await this.listen(socket, agent);
        // The sandbox's user must be able to connect; nobody else can reach STATE/run (0700).
        fs.chownSync(socket, p.uid, p.gid);
      } catch (err) {
        await this.releaseMount(agent);
        throw err;
      }
    });
    this.sessions.set(id, { agent, created, socket, close });
    caller.onClose(() => void this.end(id).catch((err: Error) => this.log.error({ id, err: err.message }, 'ending a run failed')));
    this.log.info({ id, agent, created, mountpoint, uid: p.uid }, 'run started');
    return {
      id, agent, created,
      workspace: ctx.overlay.workspace.root,
      stateDir: this.stateDir,
      mountpoint,
      userMountpoint: this.mounts.isRunMount(agent) ? null : mountpoint,
      mountpoints: this.mounts.mountpoints,
      socket,
    };
  }

  /**
   * Ends a session (again: a no-op). Resolves once its socket is closed and, if it was the last, its run mount is gone.
   * `startFailed`: the sandbox never started, so an agent this session created is removed again (`removed`),
   * unless something came to depend on it meanwhile (see `untouched`).
   */
  async end(id: string, startFailed = false): Promise<{ id: string; unmounted: boolean; removed: boolean }> {
    const s = this.sessions.get(id);
    if (!s) return { id, unmounted: false, removed: false };
    this.sessions.delete(id);
    await s.close();
    fs.rmSync(s.socket, { force: true });
    const unmounted = await this.releaseMount(s.agent);
    const removed = startFailed && s.created && this.untouched(s.agent);
    if (removed) this.overlay.removeAgent(s.agent);
    this.log.info({ id, agent: s.agent, unmounted, removed }, 'run ended');
    return { id, unmounted, removed };
  }

  /** Nothing but its creation happened to the agent: no event of its own, no children, no mount, no other run. */
  private untouched(agent: string): boolean {
    const a = this.overlay.registry.find(agent);
    if (!a) return false;
    if (this.mounts.mountpointOf(agent) || this.mounts.pendingFor(agent)) return false;
    if ([...this.sessions.values()].some((s) => s.agent === agent)) return false;
    if (this.overlay.registry.children(agent).length > 0) return false;
    return this.overlay.log.byAgent(agent, Infinity, a.createdSeq + 1)[Symbol.iterator]().next().done === true;
  }

  async endAll(): Promise<void> {
    for (const id of [...this.sessions.keys()]) await this.end(id);
  }

  /** The agent's mount for a sandbox: its own if mounted, else one in STATE/mnt shared by its runs. */
  private async acquireMount(agent: string): Promise<string> {
    // Decided only once no mount or unmount of the agent is under way: a run must not count itself
    // a user of a run mount its last user is unmounting, nor mount beside a mount being made. Checked
    // again after the wait: a request waiting on the same one (a mount after an unmount) may start first.
    do await this.mounts.idle(agent); while (this.mounts.pendingFor(agent));
    const current = this.mounts.mountpointOf(agent);
    if (current && !this.mounts.isRunMount(agent)) return current;
    if (!current) {
      const mp = path.join(this.mntDir, agent);
      // Another run's mount of it may have started since `idle` (the mount joins it): the directory
      // exists then, and mkdir's check of it would stat our own mount before it answers (a deadlock).
      if (!this.mounts.pendingFor(agent)) fs.mkdirSync(mp, { recursive: true, mode: 0o700 });
      await this.mounts.mount(agent, mp, { forRun: true });
    }
    this.runMountUsers.set(agent, (this.runMountUsers.get(agent) ?? 0) + 1);
    return this.mounts.mountpointOf(agent)!;
  }

  private async releaseMount(agent: string): Promise<boolean> {
    const users = this.runMountUsers.get(agent);
    if (users === undefined) return false;
    if (users > 1) {
      this.runMountUsers.set(agent, users - 1);
      return false;
    }
    this.runMountUsers.delete(agent);
    const mp = this.mounts.mountpointOf(agent);
    if (!mp || !this.mounts.isRunMount(agent)) return false;
    await this.mounts.unmount(agent, false);
    // A run that started meanwhile may be mounting here again.
    if (this.mounts.pendingFor(agent) || this.mounts.mountpointOf(agent)) return true;
    try {
      fs.rmdirSync(mp);
    } catch {
      // Not empty or still busy: an empty directory in the state directory is harmless.
    }
    return true;
  }
}
