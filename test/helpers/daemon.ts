import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cleanupStaleMounts } from './mounts.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
export const CLI = path.join(ROOT, 'bin/cowfs.js');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * A cowfs daemon in its own process over a temporary workspace, driven as a
 * user would: the CLI and ordinary programs in other processes (the test
 * process may read the mounts; it never serves them).
 */
export class TestDaemon {
  private proc: ChildProcess | undefined;
  readonly workspace: string;
  readonly stateDir: string;

  private constructor(readonly root: string) {
    this.workspace = path.join(root, 'ws');
    this.stateDir = path.join(this.workspace, '.cowfs');
  }

  /** A fresh temp root with `ws/` filled by `prepare` (files, a git repo…). */
  static create(prepare: (workspace: string) => void): TestDaemon {
    const d = new TestDaemon(fs.mkdtempSync(path.join(os.tmpdir(), 'cowfs-test-')));
    fs.mkdirSync(d.workspace);
    prepare(d.workspace);
    return d;
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  async start(extra: string[] = []): Promise<void> {
    const log = fs.openSync(path.join(this.root, 'daemon.out'), 'a');
    // The FUSE adapter under test (vitest.config.ts runs the integration tier once per adapter).
    const fuse = process.env.COWFS_TEST_FUSE && !extra.includes('--fuse') ? ['--fuse', process.env.COWFS_TEST_FUSE] : [];
    this.proc = spawn(process.execPath, [CLI, 'daemon', '--workspace', this.workspace, ...fuse, ...extra], {
      stdio: ['ignore', log, log],
    });
    fs.closeSync(log);
    const sock = path.join(this.stateDir, 'daemon.sock');
    // A deadline, not a count of tries: a start that remounts agents takes seconds on a loaded machine.
    for (const end = Date.now() + 60_000; Date.now() < end; await new Promise((r) => setTimeout(r, 50))) {
      if (this.proc.exitCode !== null) break;
      if (fs.existsSync(sock) && (await this.cli(['status'])).code === 0) return;
    }
    throw new Error(`daemon did not start:\n${fs.readFileSync(path.join(this.root, 'daemon.out'), 'utf8')}`);
  }

  /** A directory for a mountpoint, created under the temp root. */
  mnt(name: string): string {
    const p = path.join(this.root, 'mnt', name);
    fs.mkdirSync(p, { recursive: true });
    return p;
  }

  cli(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
    return new Promise((resolve) => {
      execFile(process.execPath, [CLI, ...args], {
        cwd: opts.cwd ?? this.workspace, env: { ...process.env, ...opts.env }, timeout: 60_000,
        maxBuffer: 256 << 20, // a log of thousands of events is megabytes of JSON (execFile's default: 1 MiB)
      }, (err, stdout, stderr) => {
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
      });
    });
  }

  /** `cowfs … --json`, expecting success. */
  async json<T = any>(args: string[], opts: { cwd?: string } = {}): Promise<T> {
    const r = await this.cli([...args, '--json'], opts);
    if (r.code !== 0) throw new Error(`cowfs ${args.join(' ')} failed (${r.code}): ${r.stdout}${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  }

  /** Runs a shell script in another process; throws with its output on failure. */
  sh(script: string, cwd: string): string {
    try {
      // A writer that appends all through a slow commit can make a file of megabytes (execFileSync's default: 1 MiB).
      return execFileSync('bash', ['-euo', 'pipefail', '-c', script], { cwd, encoding: 'utf8', stdio: 'pipe', timeout: 120_000, maxBuffer: 256 << 20 });
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string; message: string };
      throw new Error(`script failed in ${cwd}:\n${script}\n--- stdout\n${e.stdout}\n--- stderr\n${e.stderr}\n${e.message}`);
    }
  }

  /** Stops the daemon it started (SIGTERM, then SIGKILL), by its pid. */
  async stop(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise<void>((r) => p.once('exit', () => r()));
    p.kill('SIGTERM');
    const timer = setTimeout(() => p.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  }

  /** kill -9 of the daemon, sent at the call (resolves once it exited): its mounts are left behind, dead. */
  async kill9(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise<void>((r) => p.once('exit', () => r()));
    p.kill('SIGKILL');
    await exited;
  }

  /** Stops everything and removes the temp root; never leaves a mount behind. */
  async destroy(): Promise<void> {
    try {
      await this.stop();
    } finally {
      await cleanupStaleMounts(`${this.root}/`);
      fs.rmSync(this.root, { recursive: true, force: true });
    }
  }

  /** How many files the daemon knows open in `agent` (asking settles them: puts what they hold). */
  async openFiles(agent: string): Promise<number> {
    return (await this.json<{ name: string; openFiles: number }[]>(['ls'])).find((a) => a.name === agent)!.openFiles;
  }

  /**
   * Polls `cowfs ls` until the daemon knows of no file open in `agent` (libfuse 3 hears a close only
   * as its handle's idleness, late on a loaded machine), for up to 30 s; resolves to how many are left.
   */
  async untilNoOpenFiles(agent: string): Promise<number> {
    let n = await this.openFiles(agent);
    for (const end = Date.now() + 30_000; n > 0 && Date.now() < end; await new Promise((r) => setTimeout(r, 200))) n = await this.openFiles(agent);
    return n;
  }

  daemonLog(): string {
    return fs.readFileSync(path.join(this.root, 'daemon.out'), 'utf8');
  }

  /**
   * For a test that failed: the daemon's last log lines and where each of its threads waits (a
   * daemon that stopped answering shows it here; its temp root, log included, goes at destroy).
   */
  diagnosis(lines = 40): string {
    const out = [`--- daemon (pid ${this.pid ?? '-'}), last ${lines} log lines:`];
    try {
      out.push(...this.daemonLog().trimEnd().split('\n').slice(-lines));
    } catch (err) {
      out.push(`(no log: ${(err as Error).message})`);
    }
    const pid = this.pid;
    if (pid !== undefined && this.proc?.exitCode === null) {
      try {
        for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
          const stat = fs.readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8');
          const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
          out.push(`thread ${t} ${comm} state ${stat[stat.lastIndexOf(')') + 2]} wchan ${fs.readFileSync(`/proc/${pid}/task/${t}/wchan`, 'utf8')}`);
        }
      } catch (err) {
        out.push(`(threads: ${(err as Error).message})`);
      }
    }
    return out.join('\n');
  }
}

/** A checksum of every file, symlink and mode under a directory (skipping .cowfs), via the shell. */
export function treeChecksum(dir: string): string {
  return execFileSync('bash', ['-c',
    "find . -path ./.cowfs -prune -o -printf '%p %y %m %l\\n' | LC_ALL=C sort | md5sum; " +
    "find . -path ./.cowfs -prune -o -type f -print0 | LC_ALL=C sort -z | xargs -0 -r md5sum | md5sum"],
  { cwd: dir, encoding: 'utf8' });
}
