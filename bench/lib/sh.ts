/**
 * Running shell commands from the bench, never in this process: every read or
 * write of a mount happens in a child (bash, find, git, node…), as a user's
 * would (FUSE-NOTES: a process must never touch a mount it serves; the bench
 * serves none, but keeping all I/O in children also lets a stuck child be
 * killed without taking the bench down).
 *
 * Each child gets its own process group, so a timeout or a SIGINT can end it
 * and whatever it started (kill -- -pgid), and only that.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { track, untrack } from './cleanup.js';

export interface ShResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ShOptions {
  cwd?: string;
  /** Kill the child's process group after this long. Default 15 minutes. */
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  /** Exit codes that are not failures. Default [0]. */
  okCodes?: number[];
}

const MAX_OUT = 4 << 20;

export class ShError extends Error {
  constructor(readonly script: string, readonly result: ShResult, readonly timedOut: boolean) {
    super(`${timedOut ? 'timed out' : `exit ${result.code}`}: ${script.length > 300 ? `${script.slice(0, 300)}…` : script}\n` +
      `--- stderr (end)\n${result.stderr.slice(-2000)}\n--- stdout (end)\n${result.stdout.slice(-1000)}`);
  }
}

/** Runs `script` with `bash -c` (pipefail on) in its own process group; rejects on a bad exit code. */
export function sh(script: string, opts: ShOptions = {}): Promise<ShResult> {
  return new Promise((resolve, reject) => {
    const child: ChildProcess = spawn('bash', ['-o', 'pipefail', '-c', script], {
      cwd: opts.cwd, env: { ...process.env, LC_ALL: 'C', ...opts.env }, detached: true, stdio: ['ignore', 'pipe', 'pipe'],
    });
    const pid = child.pid!;
    track(pid, `sh: ${script.slice(0, 60)}`, true);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => { if (stdout.length < MAX_OUT) stdout += d.toString(); });
    child.stderr!.on('data', (d: Buffer) => { if (stderr.length < MAX_OUT) stderr += d.toString(); });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try { process.kill(-pid, 'SIGKILL'); } catch { /* gone */ }
    }, opts.timeoutMs ?? 15 * 60_000);
    child.on('error', (err) => { clearTimeout(timer); untrack(pid); reject(err); });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      untrack(pid);
      const r = { code: code ?? (signal ? 128 : 1), stdout, stderr };
      if (timedOut || !(opts.okCodes ?? [0]).includes(r.code)) reject(new ShError(script, r, timedOut));
      else resolve(r);
    });
  });
}

/** Single-quotes a string for bash. */
export function q(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * Times `script` inside bash itself ($EPOCHREALTIME before and after, no
 * fork), so the cost of starting bash is not in the number. Its output goes
 * to a pipe whose end is kept with stderr, for errors. Returns seconds, and the
 * script's stdout if `keepStdout`. The script runs in the timing shell
 * itself (no subshell): it must not `exit`.
 */
export async function timed(script: string, opts: ShOptions & { keepStdout?: boolean; discardStdout?: boolean } = {}): Promise<{ seconds: number; code: number; stdout: string; stderr: string }> {
  // Not /dev/null: the end of stdout is kept for the error message (tsc reports on stdout).
  // Scripts that leave a process running (a FUSE server) discard it instead: the pipe would stay open.
  const out = opts.keepStdout ? '' : opts.discardStdout ? '>/dev/null' : '> >(tail -c 3000 >&2)';
  const wrapped = `__s=$EPOCHREALTIME; { ${script}\n} ${out}; __rc=$?; __e=$EPOCHREALTIME; echo "BENCHTIME $__s $__e $__rc" >&2; exit $__rc`;
  const r = await sh(wrapped, opts);
  const m = /BENCHTIME (\d+)\.(\d+) (\d+)\.(\d+) (\d+)/.exec(r.stderr);
  if (!m) throw new Error(`no timing from: ${script}\n${r.stderr.slice(-500)}`);
  const t = (a: string, b: string) => Number(a) + Number(`0.${b}`);
  return {
    seconds: t(m[3]!, m[4]!) - t(m[1]!, m[2]!), code: r.code, stdout: r.stdout,
    stderr: r.stderr.replace(/BENCHTIME .*\n?/, ''),
  };
}

/** Drops the page, dentry and inode caches (cold runs). */
export async function dropCaches(): Promise<void> {
  await sh('sync; echo 3 > /proc/sys/vm/drop_caches');
}
