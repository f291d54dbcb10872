/**
 * Driving cowfs as a user does: `cowfs daemon` in its own process (stopped
 * with SIGTERM to its pid, which unmounts its agents), `cowfs mount` from the
 * CLI, and the same verbs over the daemon's WebSocket API (what the CLI sends,
 * without a node start per call) when many agents are made in a row.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import WebSocket from 'ws';
import { onCleanup, track, untrack } from './cleanup.js';
import { q, timed } from './sh.js';

// dist/bench/lib/ -> the project root.
export const ROOT = path.resolve(import.meta.dirname, '../../..');
export const CLI = path.join(ROOT, 'bin/cowfs.js');

/** One connection to the daemon's API (its protocol: {id, method, params} → {id, result | error}). */
export class Api {
  private nextId = 1;
  private readonly waiting = new Map<number, (msg: { result?: unknown; error?: { message: string } }) => void>();

  private constructor(private readonly ws: WebSocket) {
    ws.on('message', (data) => {
      const msg = JSON.parse(String(data)) as { id?: number; result?: unknown; error?: { message: string } };
      if (msg.id !== undefined) this.waiting.get(msg.id)?.(msg);
    });
  }

  static connect(socket: string): Promise<Api> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws+unix://${socket}:/`);
      ws.once('open', () => resolve(new Api(ws)));
      ws.once('error', reject);
    });
  }

  call<T = unknown>(method: string, params: Record<string, unknown> = {}): Promise<T> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`cowfs API ${method} timed out`)), 120_000);
      this.waiting.set(id, (msg) => {
        clearTimeout(timer);
        this.waiting.delete(id);
        if (msg.error) reject(new Error(`cowfs ${method} ${JSON.stringify(params)}: ${msg.error.message}`));
        else resolve(msg.result as T);
      });
      this.ws.send(JSON.stringify({ id, method, params }));
    });
  }

  close(): void {
    this.ws.close();
  }
}

export interface DaemonStartOptions {
  /** Extra node flags for the daemon process, e.g. --cpu-prof. */
  nodeFlags?: string[];
  /** Run this script instead of the CLI's `daemon` verb (the counting daemon of --profile). */
  script?: string[];
  /** The FUSE adapter (`cowfs daemon --fuse`); the daemon's default when not given. */
  fuse?: string;
}

export class CowfsDaemon {
  private proc: ChildProcess | undefined;
  private api: Api | undefined;
  private removeHook: (() => void) | undefined;
  readonly socket: string;

  constructor(readonly workspace: string, readonly stateDir: string, readonly logFile: string) {
    this.socket = path.join(stateDir, 'daemon.sock');
  }

  get pid(): number {
    return this.proc!.pid!;
  }

  async start(opts: DaemonStartOptions = {}): Promise<void> {
    fs.mkdirSync(this.stateDir, { recursive: true, mode: 0o700 });
    const out = fs.openSync(this.logFile, 'a');
    const args = opts.script ?? [CLI, 'daemon', '--workspace', this.workspace, '--state-dir', this.stateDir, ...(opts.fuse ? ['--fuse', opts.fuse] : [])];
    // Its own process group: a ^C at the terminal reaches the bench, which stops the daemon in order.
    this.proc = spawn(process.execPath, [...(opts.nodeFlags ?? []), ...args], { stdio: ['ignore', out, out], detached: true });
    fs.closeSync(out);
    const pid = this.proc.pid!;
    track(pid, 'cowfs daemon', true);
    this.removeHook = onCleanup('stop the cowfs daemon', () => this.stop());
    for (let i = 0; i < 400; i++) {
      if (this.proc.exitCode !== null) break;
      if (fs.existsSync(this.socket)) {
        try {
          this.api = await Api.connect(this.socket);
          return;
        } catch {
          // not listening yet
        }
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`the cowfs daemon did not start; ${this.logFile}:\n${fs.readFileSync(this.logFile, 'utf8').slice(-2000)}`);
  }

  async call<T = unknown>(method: string, params: Record<string, unknown> = {}): Promise<T> {
    try {
      return await this.api!.call<T>(method, params);
    } catch (err) {
      if (/timed out/.test((err as Error).message)) throw new Error(`${(err as Error).message}\n${this.diagnose()}`);
      throw err;
    }
  }

  /** What a stuck daemon is doing: its threads' states and kernel wait channels, and FUSE requests waiting. */
  diagnose(): string {
    const lines: string[] = [];
    try {
      for (const t of fs.readdirSync(`/proc/${this.pid}/task`)) {
        const stat = fs.readFileSync(`/proc/${this.pid}/task/${t}/stat`, 'utf8');
        const comm = /\((.*)\)/.exec(stat)?.[1];
        const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
        const wchan = fs.readFileSync(`/proc/${this.pid}/task/${t}/wchan`, 'utf8');
        lines.push(`thread ${t} ${comm} ${state} ${wchan}`);
      }
    } catch (err) {
      lines.push(`cannot read /proc/${this.pid}: ${(err as Error).message}`);
    }
    try {
      const dir = '/sys/fs/fuse/connections';
      const busy = fs.readdirSync(dir).map((c) => [c, fs.readFileSync(`${dir}/${c}/waiting`, 'utf8').trim()]).filter(([, w]) => w !== '0');
      lines.push(`FUSE connections with waiting requests: ${busy.map(([c, w]) => `${c}:${w}`).join(' ') || 'none'}`);
    } catch { /* no fusectl */ }
    try {
      lines.push('end of the daemon log:', ...fs.readFileSync(this.logFile, 'utf8').trim().split('\n').slice(-5));
    } catch { /* none */ }
    return lines.join('\n');
  }

  /** `cowfs mount AGENT DIR` over the API. */
  async mount(agent: string, dir: string): Promise<void> {
    fs.mkdirSync(dir, { recursive: true });
    await this.call('mount', { agent, mountpoint: dir });
  }

  /** `cowfs mount AGENT DIR` with the CLI, timed in bash (includes starting node). */
  async mountCli(agent: string, dir: string): Promise<number> {
    fs.mkdirSync(dir, { recursive: true });
    const r = await timed(`${q(process.execPath)} ${q(CLI)} --state-dir ${q(this.stateDir)} mount ${q(agent)} ${q(dir)}`);
    return r.seconds;
  }

  /** Unmounts and removes an agent (`cowfs rm`). */
  async rm(agent: string): Promise<void> {
    await this.call('rm', { agent, recursive: true });
  }

  /** VmRSS and VmHWM of the daemon process, in bytes. */
  memory(): { rss: number; hwm: number } {
    const s = fs.readFileSync(`/proc/${this.pid}/status`, 'utf8');
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN) * 1024;
    return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
  }

  /** SIGTERM (the daemon unmounts every agent and exits); SIGKILL after 30 s. */
  async stop(): Promise<void> {
    const p = this.proc;
    this.removeHook?.();
    this.api?.close();
    this.api = undefined;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise<void>((r) => p.once('exit', () => r()));
    p.kill('SIGTERM');
    const timer = setTimeout(() => {
      process.stderr.write('bench: the cowfs daemon did not stop within 30 s of SIGTERM; SIGKILL\n');
      try { process.kill(-p.pid!, 'SIGKILL'); } catch { /* gone */ }
    }, 30_000);
    await exited;
    clearTimeout(timer);
    untrack(p.pid!);
  }
}
