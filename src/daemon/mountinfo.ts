import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

export interface MountInfo {
  mountpoint: string;
  fstype: string;
  source: string;
  /** major:minor of the mount; the minor is the FUSE connection number under /sys/fs/fuse/connections. */
  device: string;
}

/** /proc/self/mountinfo escapes space, tab, newline and backslash as octal. */
function unescape(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export function listMounts(): MountInfo[] {
  const out: MountInfo[] = [];
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    if (!line) continue;
    const [pre, post] = line.split(' - ');
    const f = pre!.split(' ');
    const g = (post ?? '').split(' ');
    out.push({ device: f[2]!, mountpoint: unescape(f[4]!), fstype: g[0]!, source: unescape(g[1] ?? '') });
  }
  return out;
}

export function fuseMountAt(mountpoint: string): MountInfo | undefined {
  return listMounts().find((m) => m.mountpoint === mountpoint && m.fstype.startsWith('fuse') && m.fstype !== 'fusectl');
}

/**
 * Frees a mountpoint left by a dead server: a lazy unmount, and if waiters
 * may still hang on the connection, abort it (FUSE-NOTES: a stuck mount is
 * freed only by aborting its connection). Never called on a live mount of
 * this process.
 */
export function cleanStaleMount(m: MountInfo): void {
  const minor = m.device.split(':')[1];
  const conn = `/sys/fs/fuse/connections/${minor}`;
  try {
    if (!fs.existsSync(conn)) execFileSync('mount', ['-t', 'fusectl', 'none', '/sys/fs/fuse/connections'], { stdio: 'ignore' });
    if (fs.existsSync(`${conn}/abort`)) fs.writeFileSync(`${conn}/abort`, '1');
  } catch {
    // Aborting is best effort; the lazy unmount below is what frees the path.
  }
  execFileSync('umount', ['-l', m.mountpoint], { stdio: 'ignore' });
}
