import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { abortConnection, connectionOf, ensureFusectl, fuseMountsUnder, waitingOn } from '../src/fuse/mount-table.js';
import { cleanupStaleMounts } from './helpers/mounts.js';

/**
 * Before and after the whole suite: free every FUSE mount under the test
 * roots (os.tmpdir()/cowfs-test-*) whose server is dead or hung — lazy
 * unmount, aborting the connection through fusectl when something is stuck
 * on it — so a crashed or killed run never leaves a mount that can hang the
 * machine. Mounts whose server still answers are left alone: they belong to
 * another test run on the same machine (each test file stops its own
 * servers and daemons in its teardown). After the suite, daemons whose
 * test file did not stop them are ended first, so their mounts go too.
 * During the suite, a mount whose server is stuck is aborted (watchForHungMounts).
 */
const PREFIX = path.join(os.tmpdir(), 'cowfs-test-');

async function sweep(when: string): Promise<void> {
  const freed = await cleanupStaleMounts(PREFIX, { onlyDead: true });
  if (freed.length > 0) process.stderr.write(`global ${when}: freed stale FUSE mounts: ${freed.join(', ')}\n`);
}

/**
 * Daemons of test workspaces (`cowfs daemon --workspace PREFIX…`) whose
 * parent is no vitest process: a test file whose teardown did not finish (a
 * hook timed out, its worker was ended) leaves its daemon serving live
 * mounts, which the sweep leaves alone. At the end of the suite every test
 * process is gone, so any such daemon is left over.
 */
function leftoverDaemons(): number[] {
  const found: number[] = [];
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      const i = argv.indexOf('daemon');
      if (i < 1 || !argv[i - 1]!.endsWith('bin/cowfs.js') || argv[i + 1] !== '--workspace' || !argv[i + 2]?.startsWith(PREFIX)) continue;
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const ppid = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1];
      if (!fs.readFileSync(`/proc/${ppid}/cmdline`, 'utf8').includes('vitest')) found.push(Number(pid));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

/** SIGTERM (a daemon unmounts what it serves), SIGKILL after 10 s; the sweep then frees what is left. */
async function endLeftoverDaemons(): Promise<void> {
  const pids = leftoverDaemons();
  if (pids.length === 0) return;
  process.stderr.write(`global teardown: ending daemons left by tests: ${pids.join(', ')}\n`);
  const signal = (sig: NodeJS.Signals) => pids.forEach((pid) => { try { process.kill(pid, sig); } catch { /* gone */ } });
  const alive = () => pids.filter((pid) => fs.existsSync(`/proc/${pid}`));
  signal('SIGTERM');
  for (const end = Date.now() + 10_000; alive().length > 0 && Date.now() < end;) await new Promise((r) => setTimeout(r, 100));
  signal('SIGKILL');
}

/** Requests waiting this long without a pause on a test mount mean its server is stuck (no test does I/O that long). */
const HUNG_MS = 90_000;

/**
 * While the suite runs, from this (the main) process: aborts the FUSE
 * connection of a test mount on which requests have waited for HUNG_MS in
 * every sample. A server stuck on a request to itself never answers, and a
 * test process blocked in a system call on its mount cannot time out: the
 * run would stall until CI's limit. Aborted, the calls fail and the test
 * fails, with the mount named on stderr.
 */
function watchForHungMounts(): () => void {
  const waitingSince = new Map<string, number>();
  const timer = setInterval(() => {
    const now = Date.now();
    const waiting = new Set<string>();
    for (const m of fuseMountsUnder(PREFIX)) {
      const n = connectionOf(m);
      if ((waitingOn(n) ?? 0) === 0) continue;
      waiting.add(m.device);
      const since = waitingSince.get(m.device) ?? now;
      waitingSince.set(m.device, since);
      if (now - since < HUNG_MS) continue;
      process.stderr.write(`global watch: aborting the hung FUSE mount ${m.mountpoint} (requests waiting for ${Math.round((now - since) / 1000)} s)\n`);
      void abortConnection(n);
      waitingSince.delete(m.device);
    }
    for (const device of [...waitingSince.keys()]) if (!waiting.has(device)) waitingSince.delete(device);
  }, 5000);
  timer.unref();
  return () => clearInterval(timer);
}

let stopWatching = (): void => undefined;

export async function setup(): Promise<void> {
  await sweep('setup');
  await ensureFusectl();
  stopWatching = watchForHungMounts();
}

export async function teardown(): Promise<void> {
  stopWatching();
  await endLeftoverDaemons();
  await sweep('teardown');
}
