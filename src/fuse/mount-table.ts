/**
 * The kernel's view of FUSE mounts, and the ways to get rid of one, for the
 * adapter (which must never leave a mount behind) and for whoever cleans up
 * after a dead or hung server (the test suite, a restarting daemon).
 *
 * Nothing here touches a mount's contents: mounts are read from procfs,
 * connections are aborted through fusectl (sysfs), and unmounting runs
 * `fusermount`/`umount` in a child process with path canonicalization off,
 * so the serving process can use these on its own mount without the
 * deadlock FUSE-NOTES describes (a sync call into its own mount).
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';

export interface FuseMount {
  mountpoint: string;
  /** `fuse`, `fuse.cowfs`, `fuseblk`… */
  fstype: string;
  /** The mount's source (`fsname=`). */
  source: string;
  /** `major:minor`; for FUSE the minor is the connection number under /sys/fs/fuse/connections. */
  device: string;
  /** Per-mount options (rw, nosuid, relatime…). */
  mountOptions: string;
  /** Superblock options (user_id, group_id, default_permissions, allow_other, max_read…). */
  superOptions: string;
}

export const FUSECTL = '/sys/fs/fuse/connections';

/** /proc/self/mountinfo escapes space, tab, newline and backslash as octal. */
function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Every FUSE mount (not fusectl), in mount order: a later entry at the same mountpoint sits on top. */
export function listFuseMounts(): FuseMount[] {
  const out: FuseMount[] = [];
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    if (!line) continue;
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const f = line.slice(0, sep).split(' ');
    const g = line.slice(sep + 3).split(' ');
    const fstype = g[0] ?? '';
    if (!(fstype === 'fuse' || fstype === 'fuseblk' || fstype.startsWith('fuse.'))) continue;
    out.push({
      mountpoint: unescapeMountinfo(f[4] ?? ''),
      device: f[2] ?? '',
      mountOptions: f[5] ?? '',
      fstype,
      source: unescapeMountinfo(g[1] ?? ''),
      superOptions: g[2] ?? '',
    });
  }
  return out;
}

/** The FUSE mounts at exactly `mountpoint`, bottom first. */
export function fuseMountsAt(mountpoint: string): FuseMount[] {
  return listFuseMounts().filter((m) => m.mountpoint === mountpoint);
}

/** FUSE mounts whose mountpoint starts with `prefix` (a plain string prefix), deepest first. */
export function fuseMountsUnder(prefix: string): FuseMount[] {
  return listFuseMounts()
    .filter((m) => m.mountpoint.startsWith(prefix))
    .sort((a, b) => b.mountpoint.length - a.mountpoint.length);
}

/** The connection number of a mount (the minor of its device). */
export function connectionOf(m: Pick<FuseMount, 'device'>): number {
  return Number(m.device.split(':')[1]);
}

function run(cmd: string, args: string[], timeoutMs = 10_000): Promise<{ ok: boolean; out: string; missing: boolean }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, killSignal: 'SIGKILL', encoding: 'utf8' }, (err, stdout, stderr) => {
      const missing = (err as NodeJS.ErrnoException | null)?.code === 'ENOENT';
      resolve({ ok: !err, out: `${stdout}${stderr}`.trim() || (err ? err.message : ''), missing });
    });
  });
}

/**
 * Detaches the mount at `mountpoint` now, even when it is busy (processes
 * keep what they hold open; the name is gone at once). Tries what
 * fuse-native itself runs (`fusermount -u -z`, which an unprivileged server
 * needs), then `umount -l`. Both run with no shell and, for umount, no
 * canonicalization (`-c`): canonicalizing would stat the mountpoint, which
 * hangs on a hung server and deadlocks a server unmounting its own mount.
 * Resolves to what was tried and said, for error messages.
 */
export async function lazyUnmount(mountpoint: string): Promise<string[]> {
  const said: string[] = [];
  const fm = await run('fusermount', ['-u', '-z', '--', mountpoint]);
  if (fm.ok) return said;
  said.push(fm.missing ? 'fusermount: not installed' : `fusermount -u -z: ${fm.out}`);
  const um = await run('umount', ['-l', '-c', '--', mountpoint]);
  if (!um.ok) said.push(`umount -l: ${um.out}`);
  return said;
}

/** Mounts fusectl on /sys/fs/fuse/connections if it is not there yet. */
export async function ensureFusectl(): Promise<boolean> {
  if (listMountsOfType('fusectl').length > 0) return true;
  const r = await run('mount', ['-t', 'fusectl', 'none', FUSECTL]);
  return r.ok || listMountsOfType('fusectl').length > 0;
}

function listMountsOfType(type: string): string[] {
  return fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')
    .filter((l) => l.includes(` - ${type} `))
    .map((l) => l.split(' ')[4] ?? '');
}

/** How many requests wait on connection `n`; undefined when the connection is gone (or fusectl is missing). */
export function waitingOn(n: number): number | undefined {
  try {
    return Number(fs.readFileSync(`${FUSECTL}/${n}/waiting`, 'utf8').trim());
  } catch {
    return undefined;
  }
}

/**
 * Aborts FUSE connection `n`: every request waiting on it fails with
 * ENOTCONN and the processes blocked in them can exit (FUSE-NOTES: the only
 * thing that frees a process stuck in state D on a FUSE mount). Returns
 * false when the connection no longer exists.
 */
export async function abortConnection(n: number): Promise<boolean> {
  if (!Number.isInteger(n) || n <= 0) return false;
  await ensureFusectl();
  try {
    fs.writeFileSync(`${FUSECTL}/${n}/abort`, '1');
    return true;
  } catch {
    return false;
  }
}
