/**
 * The peers cowfs is measured against: kernel overlayfs, fuse-overlayfs, and
 * the ways of making an isolated copy (git worktree + a copy of
 * node_modules, cp -a, a cp -as symlink forest). Every mount lives under the
 * bench's run directory; fuse-overlayfs runs in the foreground (-f) from a
 * shell, its pid recorded so the bench can end it by pid if unmounting
 * does not.
 */
import fs from 'node:fs';
import path from 'node:path';
import { track, untrack } from './cleanup.js';
import { q, sh, timed } from './sh.js';

export interface OverlayDirs { mnt: string; upper: string; work: string; top: string }

export function overlayDirs(top: string): OverlayDirs {
  return { top, mnt: path.join(top, 'mnt'), upper: path.join(top, 'upper'), work: path.join(top, 'work') };
}

/** Shell lines that create the dirs and mount one overlay (kernel or FUSE) of `lower` under `top`. */
function mountLines(kind: 'overlayfs' | 'fuse-overlayfs', lower: string, top: string, pidFile: string): string {
  const d = overlayDirs(top);
  const mk = `mkdir -p ${q(d.mnt)} ${q(d.upper)} ${q(d.work)}`;
  const o = `lowerdir=${lower},upperdir=${d.upper},workdir=${d.work}`;
  if (kind === 'overlayfs') return `${mk} && mount -t overlay overlay -o ${q(o)} ${q(d.mnt)}`;
  // -f keeps it in the foreground of its own background job: its pid is ours to record.
  // setsid: its own session and process group, out of reach of a timeout that kills the script's group.
  return `${mk} && { setsid fuse-overlayfs -f -o ${q(o)} ${q(d.mnt)} </dev/null >>${q(`${top}.log`)} 2>&1 & echo $! >> ${q(pidFile)}; } && ` +
    `until mountpoint -q ${q(d.mnt)}; do kill -0 $! 2>/dev/null || { echo "fuse-overlayfs died: $(cat ${q(`${top}.log`)})" >&2; exit 1; }; done`;
}

export class OverlayPool {
  private readonly pidFile: string;

  constructor(readonly kind: 'overlayfs' | 'fuse-overlayfs', readonly lower: string, readonly root: string) {
    fs.mkdirSync(root, { recursive: true });
    this.pidFile = path.join(root, 'pids');
  }

  private trackPids(): void {
    if (!fs.existsSync(this.pidFile)) return;
    for (const s of fs.readFileSync(this.pidFile, 'utf8').split('\n')) if (s.trim()) track(Number(s), 'fuse-overlayfs');
  }

  /** Mounts `names.length` overlays in one shell, timed in bash; returns seconds. */
  async create(names: string[]): Promise<number> {
    const script = names.map((n) => mountLines(this.kind, this.lower, path.join(this.root, n), this.pidFile)).join('\n');
    try {
      return (await timed(script, { timeoutMs: 120_000, discardStdout: true })).seconds;
    } finally {
      this.trackPids();
    }
  }

  mnt(name: string): string {
    return overlayDirs(path.join(this.root, name)).mnt;
  }

  /** Unmounts and deletes the given overlays (untimed). fuse-overlayfs exits when unmounted. */
  async destroy(names: string[]): Promise<void> {
    const mnts = names.map((n) => q(this.mnt(n))).join(' ');
    await sh(`for m in ${mnts}; do umount "$m" || umount -l "$m"; done`, { timeoutMs: 300_000 });
    if (this.kind === 'fuse-overlayfs' && fs.existsSync(this.pidFile)) {
      const pids = fs.readFileSync(this.pidFile, 'utf8').split('\n').filter((s) => s.trim()).map(Number);
      for (let i = 0; i < 50 && pids.some(alive); i++) await new Promise((r) => setTimeout(r, 100));
      for (const p of pids) if (!alive(p)) untrack(p);
      const left = pids.filter(alive);
      fs.writeFileSync(this.pidFile, left.map((p) => `${p}\n`).join(''));
    }
    await sh(`rm -rf ${names.map((n) => q(path.join(this.root, n))).join(' ')}`);
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** KiB of disk blocks used under the given paths (du -sk, hard links counted once). */
export async function diskKiB(paths: string[]): Promise<number> {
  const existing = paths.filter((p) => fs.existsSync(p));
  if (existing.length === 0) return 0;
  const out = (await sh(`du -skc ${existing.map(q).join(' ')} | tail -1 | cut -f1`)).stdout.trim();
  return Number(out);
}

export type CopyKind = 'worktree+cp' | 'cp -a' | 'cp -as';

/** Shell line that makes one isolated copy of `ws` at `dest` (a new path). */
export function copyLine(kind: CopyKind, ws: string, dest: string): string {
  switch (kind) {
    case 'worktree+cp':
      // A worktree lacks what git ignores: node_modules is copied in.
      return `git -C ${q(ws)} worktree add -q --detach ${q(dest)} HEAD && cp -a ${q(`${ws}/node_modules`)} ${q(`${dest}/node_modules`)}`;
    case 'cp -a':
      return `cp -a ${q(ws)} ${q(dest)}`;
    case 'cp -as':
      return `cp -as ${q(ws)} ${q(dest)}`;
  }
}

export async function removeCopies(kind: CopyKind, ws: string, dests: string[]): Promise<void> {
  await sh(`rm -rf ${dests.map(q).join(' ')}`, { timeoutMs: 600_000 });
  if (kind === 'worktree+cp') await sh(`git -C ${q(ws)} worktree prune`);
}
