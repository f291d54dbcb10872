import fs from 'node:fs';
import path from 'node:path';
import pino, { type Logger } from 'pino';
import { Cascade } from '../cascade/cascade.js';
import { WorkspaceWatcher } from '../cascade/workspace-watcher.js';
import { recoverLanding } from '../land/workspace-landing.js';
import { checkStore } from '../store/check.js';
import { Overlay } from '../overlay/overlay.js';
import { ApiServer } from './server.js';
import type { MountAdapter } from '../fuse/adapters.js';
import { MountManager } from './mounts.js';
import { RunSessions } from './runs.js';
import { LOG_NAME, PID_NAME, SOCKET_NAME } from './protocol.js';

export interface DaemonOptions {
  workspace: string;
  stateDir?: string;
  adapter: MountAdapter;
  /** Also log to stderr (foreground). */
  logToStderr: boolean;
}

/** Is a process with this pid alive? */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The pid of the daemon running for a state directory, by its pid file; undefined if none runs. */
export function runningDaemon(stateDir: string): number | undefined {
  let pid: number;
  try {
    pid = Number(fs.readFileSync(path.join(stateDir, PID_NAME), 'utf8').trim());
  } catch {
    return undefined;
  }
  return pid > 0 && daemonRunning(pid) ? pid : undefined;
}

/**
 * Whether the pid file's process is a daemon still running. The pid alone is not enough: after a
 * reboot or a container restart it may name an unrelated process (and no daemon could start until
 * the file was deleted), and a daemon killed a moment ago lingers as a zombie. Every daemon runs
 * as the CLI's `daemon` verb (detached or not), or as a script of its own named so (the bench's
 * counting daemon), which its command line shows.
 */
function daemonRunning(pid: number): boolean {
  if (!alive(pid)) return false;
  let stat: string;
  let argv: string[];
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ENOENT'; // no /proc to ask: the pid is all we know
  }
  const state = stat[stat.lastIndexOf(')') + 2];
  return state !== 'Z' && state !== 'X' && argv.some((a) => a === 'daemon' || a.endsWith('daemon.js'));
}

/**
 * One daemon per workspace: the overlay, every agent's mount, and the API.
 * A pid file keeps a second daemon off the same state directory; a stale one
 * (a killed daemon) is taken over, and the mounts it left are cleaned.
 */
export class Daemon {
  private constructor(
    readonly overlay: Overlay,
    readonly mounts: MountManager,
    private readonly server: ApiServer,
    private readonly watcher: WorkspaceWatcher,
    private readonly runs: RunSessions,
    readonly log: Logger,
    private readonly files: { pid: string; socket: string },
  ) {}

  static async start(opts: DaemonOptions): Promise<Daemon> {
    const workspace = path.resolve(opts.workspace);
    const stateDir = path.resolve(opts.stateDir ?? path.join(workspace, '.cowfs'));
    fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    const pidFile = path.join(stateDir, PID_NAME);
    const socket = path.join(stateDir, SOCKET_NAME);
    const old = runningDaemon(stateDir);
    if (old !== undefined && old !== process.pid) {
      throw new Error(`a cowfs daemon (pid ${old}) is already running for ${workspace}`);
    }
    if (Buffer.byteLength(socket) > 107) {
      throw new Error(`the state directory path is too long for a unix socket (${socket}); use a shorter --state-dir`);
    }
    // Before the log opens: an error thrown while pino's file is not ready yet ends in its stack trace.
    checkStore(path.join(stateDir, 'store'));
    fs.writeFileSync(pidFile, `${process.pid}\n`);
    const streams: pino.StreamEntry[] = [{ stream: pino.destination({ dest: path.join(stateDir, LOG_NAME), sync: false }) }];
    if (opts.logToStderr) streams.push({ stream: process.stderr });
    const log = pino({ base: { pid: process.pid } }, pino.multistream(streams));
    let overlay: Overlay;
    try {
      overlay = await Overlay.open({ workspace, stateDir });
    } catch (err) {
      fs.rmSync(pidFile, { force: true });
      throw err;
    }
    // The core stays FUSE-free: the adapter's addon lends the store what Node lacks.
    overlay.store.scratch.writeback = opts.adapter.writeback;
    const mounts = new MountManager(overlay, opts.adapter, log);
    const cascade = new Cascade(overlay);
    const landing = recoverLanding(overlay, cascade);
    if (landing) log.warn(landing, 'a landing into the workspace was interrupted by a crash');
    const resumed = cascade.resumeInterrupted();
    if (resumed.rebased.length > 0) log.warn(resumed, 'a cascade was interrupted by a crash: the agents it had not reached are rebased now');
    for (const { agent, error } of resumed.failed) log.error({ agent, error }, 'could not finish an interrupted cascade for this agent: it stays on its old base until its parent commits again');
    const runs: RunSessions = new RunSessions(stateDir, overlay, mounts, (sock, agent) => server.listenScoped(sock, agent), log);
    const server: ApiServer = new ApiServer({ overlay, mounts, cascade, runs, adapter: opts.adapter.name, startedAt: Date.now() }, log);
    const watcher = new WorkspaceWatcher(overlay, cascade, log, (listener) => mounts.watchDisk(listener));
    const daemon = new Daemon(overlay, mounts, server, watcher, runs, log, { pid: pidFile, socket });
    await runs.cleanStale();
    await mounts.restore();
    await server.listen(socket);
    log.info({ workspace, stateDir, adapter: opts.adapter.name, agents: overlay.agents().length, mounted: mounts.count }, 'daemon started');
    return daemon;
  }

  async stop(): Promise<void> {
    this.log.info('daemon stopping');
    await this.runs.endAll();
    await this.server.close();
    await this.watcher.close();
    await this.mounts.unmountAll();
    await this.overlay.close();
    fs.rmSync(this.files.socket, { force: true });
    fs.rmSync(this.files.pid, { force: true });
    this.log.info('daemon stopped');
    this.log.flush();
  }
}
