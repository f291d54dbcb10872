import fs from 'node:fs';
import path from 'node:path';
import { FsError } from './contract.js';
import { isWithin } from './paths.js';

/** What the workspace on disk holds at a path (lstat, without following symlinks). */
export interface DiskNode {
  kind: 'file' | 'dir' | 'symlink';
  stat: fs.Stats;
  realPath: string;
}

/**
 * The bottom of every tree: the real workspace directory, read-only. Paths
 * that must never show through (the state directory, agent mountpoints
 * inside the workspace — reading those from the daemon would deadlock it)
 * are hidden.
 */
/** How long an ancestor seen as a real directory is trusted (the kernel's own cache window). */
const DIR_TRUST_MS = 1000;
const DIR_CACHE_MAX = 100_000;

export class Workspace {
  private readonly hidden = new Set<string>();
  /** Ancestors recently seen to be real directories, not symlinks: prefix → until when. */
  private readonly realDirs = new Map<string, number>();

  constructor(readonly root: string) {
    const st = fs.statSync(root, { throwIfNoEntry: false });
    if (!st?.isDirectory()) throw new Error(`workspace ${root} is not a directory`);
  }

  /** Hides an absolute path if it lies inside the workspace. */
  hide(abs: string): void {
    const rel = path.relative(this.root, abs);
    if (rel && !rel.startsWith('..') && !path.isAbsolute(rel)) this.hidden.add(rel.split(path.sep).join('/'));
  }

  unhide(abs: string): void {
    this.hidden.delete(path.relative(this.root, abs).split(path.sep).join('/'));
  }

  isHidden(p: string): boolean {
    if (this.hidden.size === 0) return false;
    for (const h of this.hidden) if (isWithin(p, h)) return true;
    return false;
  }

  realPath(p: string): string {
    return p === '' ? this.root : `${this.root}/${p}`;
  }

  lookup(p: string): DiskNode | undefined {
    if (this.isHidden(p) || !this.ancestorsAreDirs(p)) return undefined;
    const realPath = this.realPath(p);
    let stat: fs.Stats | undefined;
    try {
      stat = fs.lstatSync(realPath, { throwIfNoEntry: false });
    } catch (err) {
      // ENOTDIR: an ancestor is a file — the path does not exist.
      if ((err as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
      throw err;
    }
    if (!stat) return undefined;
    const kind = stat.isDirectory() ? 'dir' : stat.isSymbolicLink() ? 'symlink' : stat.isFile() ? 'file' : undefined;
    // Sockets, fifos and devices are not part of a project tree.
    return kind ? { kind, stat, realPath } : undefined;
  }

  /**
   * lstat(2) follows symlinks in the middle of a path: a workspace symlink
   * to a directory outside would lead a lookup out of the workspace. The
   * kernel never sends such a path through a mount (it resolves a symlink
   * itself), but paths from the API can; so every ancestor must be a real
   * directory.
   */
  private ancestorsAreDirs(p: string): boolean {
    const now = Date.now();
    for (let i = p.indexOf('/'); i >= 0; i = p.indexOf('/', i + 1)) {
      const dir = p.slice(0, i);
      if ((this.realDirs.get(dir) ?? 0) > now) continue;
      const st = fs.lstatSync(this.realPath(dir), { throwIfNoEntry: false });
      if (!st?.isDirectory()) return false;
      if (this.realDirs.size >= DIR_CACHE_MAX) this.realDirs.clear();
      this.realDirs.set(dir, now + DIR_TRUST_MS);
    }
    return true;
  }

  /** Names in a workspace directory, hidden ones left out. */
  list(p: string): fs.Dirent[] {
    try {
      const all = fs.readdirSync(this.realPath(p), { withFileTypes: true });
      return this.hidden.size === 0 ? all : all.filter((d) => !this.isHidden(p === '' ? d.name : `${p}/${d.name}`));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return [];
      throw new FsError('EIO', (err as Error).message);
    }
  }
}
