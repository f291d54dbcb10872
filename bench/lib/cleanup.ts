/**
 * Everything the bench starts is registered here, and ended here: on normal
 * exit, on failure, on SIGINT/SIGTERM/SIGHUP. Only what the bench started is
 * ended, by pid (or by the process group of a child it spawned in its own
 * group), never by name; only mounts under the bench's own run directory are
 * unmounted.
 *
 * Order: the async hooks first (stop the cowfs daemon with SIGTERM so it
 * unmounts its agents itself), then every mount still under the run
 * directory, deepest first — `umount`, and if that fails, abort the FUSE
 * connection and unmount lazily (FUSE-NOTES: only aborting frees a stuck
 * mount) — then every tracked process still alive (SIGTERM, then SIGKILL).
 */
import { alive, runningDaemon } from '../../src/daemon/daemon.js';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

interface Tracked { what: string; group: boolean }

const procs = new Map<number, Tracked>();
const hooks: { name: string; fn: () => Promise<void> }[] = [];
let mountRoot: string | undefined;
let cleaning: Promise<void> | undefined;

export function track(pid: number, what: string, group = false): void {
  procs.set(pid, { what, group });
}

export function untrack(pid: number): void {
  procs.delete(pid);
}

/** Mounts under this directory are the bench's (it creates the directory afresh). */
export function setMountRoot(dir: string): void {
  mountRoot = dir.replace(/\/+$/, '');
}

/** An async step run first at cleanup (latest registered runs first). */
export function onCleanup(name: string, fn: () => Promise<void>): () => void {
  const h = { name, fn };
  hooks.push(h);
  return () => {
    const i = hooks.indexOf(h);
    if (i >= 0) hooks.splice(i, 1);
  };
}

function unescape(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export interface Mount { mountpoint: string; fstype: string; source: string; device: string }

export function listMounts(): Mount[] {
  const out: Mount[] = [];
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    if (!line) continue;
    const [pre, post] = line.split(' - ');
    const f = pre!.split(' ');
    const g = (post ?? '').split(' ');
    out.push({ device: f[2]!, mountpoint: unescape(f[4]!), fstype: g[0]!, source: unescape(g[1] ?? '') });
  }
  return out;
}

/** Mounts under `root` (the bench's run directory), deepest first. */
export function mountsUnder(root: string): Mount[] {
  return listMounts()
    .filter((m) => m.mountpoint === root || m.mountpoint.startsWith(`${root}/`))
    .sort((a, b) => b.mountpoint.length - a.mountpoint.length);
}

function run(cmd: string, args: string[]): boolean {
  try {
    execFileSync(cmd, args, { stdio: 'ignore', timeout: 30_000 });
    return true;
  } catch {
    return false;
  }
}

/** Aborts a FUSE mount's connection (its minor device number names it). */
export function abortFuse(m: Mount): void {
  const minor = m.device.split(':')[1];
  const conn = `/sys/fs/fuse/connections/${minor}`;
  try {
    if (!fs.existsSync('/sys/fs/fuse/connections/') || fs.readdirSync('/sys/fs/fuse/connections').length === 0) {
      run('mount', ['-t', 'fusectl', 'none', '/sys/fs/fuse/connections']);
    }
    if (fs.existsSync(`${conn}/abort`)) fs.writeFileSync(`${conn}/abort`, '1');
  } catch {
    // best effort; the lazy unmount frees the name
  }
}

/** Unmounts every mount under `root`: plain umount, else abort (FUSE) + lazy unmount. Returns what was left. */
export function unmountAllUnder(root: string, log = true): Mount[] {
  for (const m of mountsUnder(root)) {
    if (run('umount', [m.mountpoint])) continue;
    if (log) process.stderr.write(`bench: ${m.mountpoint} busy or stuck: ${m.fstype.startsWith('fuse') ? 'aborting its FUSE connection and ' : ''}unmounting lazily\n`);
    if (m.fstype.startsWith('fuse')) abortFuse(m);
    run('umount', ['-l', m.mountpoint]);
  }
  return mountsUnder(root);
}

/**
 * The cowfs daemons of a run killed with SIGKILL (nothing could end them): found by the pid files
 * in their state directories under `root`, ended (SIGTERM: they unmount their agents) if that pid
 * is still a cowfs daemon. Returns their pids.
 */
export async function endLeftDaemons(root: string): Promise<number[]> {
  const dirs = fs.existsSync(root) ? fs.readdirSync(root) : [];
  const left = dirs.map((dir) => runningDaemon(path.join(root, dir))).filter((pid) => pid !== undefined);
  const signal = (pid: number, sig: NodeJS.Signals) => {
    try { process.kill(pid, sig); } catch { /* gone meanwhile */ }
  };
  for (const pid of left) signal(pid, 'SIGTERM');
  for (let i = 0; i < 50 && left.some(alive); i++) await sleep(100);
  for (const pid of left.filter(alive)) signal(pid, 'SIGKILL');
  return left;
}

function killTracked(sig: NodeJS.Signals): void {
  for (const [pid, t] of procs) {
    if (!alive(pid)) {
      procs.delete(pid);
      continue;
    }
    try {
      process.kill(t.group ? -pid : pid, sig);
    } catch {
      // gone
    }
  }
}

async function sleep(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

/** Stops and unmounts everything the bench started. Safe to call more than once. */
export function cleanupAll(): Promise<void> {
  cleaning ??= (async () => {
    // Children running workloads first: they may hold the mounts busy.
    for (const [pid, t] of procs) {
      if (t.group && alive(pid)) try { process.kill(-pid, 'SIGKILL'); } catch { /* gone */ }
    }
    for (const h of [...hooks].reverse()) {
      try {
        await h.fn();
      } catch (err) {
        process.stderr.write(`bench: cleanup step ${h.name} failed: ${(err as Error).message}\n`);
      }
    }
    if (mountRoot) unmountAllUnder(mountRoot);
    killTracked('SIGTERM');
    for (let i = 0; i < 20 && [...procs.keys()].some(alive); i++) await sleep(100);
    killTracked('SIGKILL');
    if (mountRoot) {
      const left = unmountAllUnder(mountRoot);
      if (left.length) process.stderr.write(`bench: mounts still present: ${left.map((m) => m.mountpoint).join(' ')}\n`);
    }
  })();
  return cleaning;
}

/** Last resort when the process exits without the async cleanup having finished. */
function syncCleanup(): void {
  killTracked('SIGKILL');
  if (mountRoot) {
    for (const m of mountsUnder(mountRoot)) {
      if (m.fstype.startsWith('fuse')) abortFuse(m);
      run('umount', ['-l', m.mountpoint]);
    }
  }
}

let signalled = false;

/** A signal asked the bench to stop: what fails from now on fails because of the cleanup. */
export function interrupted(): boolean {
  return signalled;
}

export function installHandlers(): void {
  const onSignal = (sig: NodeJS.Signals) => {
    if (signalled) {
      process.stderr.write(`bench: ${sig} again, cleaning up synchronously\n`);
      syncCleanup();
      process.exit(130);
    }
    signalled = true;
    process.stderr.write(`\nbench: ${sig}: stopping and unmounting what the bench started…\n`);
    cleanupAll().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);
  process.on('uncaughtException', (err) => {
    process.stderr.write(`bench: uncaught: ${err.stack ?? err}\n`);
    cleanupAll().finally(() => process.exit(1));
  });
  process.on('unhandledRejection', (err) => {
    process.stderr.write(`bench: unhandled rejection: ${(err as Error)?.stack ?? err}\n`);
    cleanupAll().finally(() => process.exit(1));
  });
  process.on('exit', syncCleanup);
}
