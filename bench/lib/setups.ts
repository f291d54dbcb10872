/**
 * The four ways of looking at the workspace that the read/write workloads
 * run in, side by side: the native disk itself, a cowfs agent's mount,
 * kernel overlayfs and fuse-overlayfs (both with the workspace as lowerdir).
 * Each can open N isolated views at once (N=10 for the parallel workloads).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { CowfsDaemon } from './cowfs.js';
import { OverlayPool } from './peers.js';

/**
 * `cowfs` is the daemon's default (libfuse 3, native/, no writeback cache); `cowfs-wcache` the same with
 * `cowfs config writeCache on` (full runs only); `cowfs-libfuse2` the fuse-native adapter.
 */
export const SETUPS = ['native', 'cowfs', 'cowfs-wcache', 'cowfs-libfuse2', 'overlayfs', 'fuse-overlayfs'] as const;
export type SetupName = typeof SETUPS[number];

export interface Views {
  /** The directories to work in, one per name given to open(). */
  dirs: string[];
  /** Where write workloads put their files (native: a scratch directory beside the workspace, never the workspace). */
  writeDirs: string[];
  close(): Promise<void>;
}

export interface Provider {
  name: SetupName;
  open(names: string[]): Promise<Views>;
}

export function nativeProvider(workspace: string, scratchRoot: string): Provider {
  return {
    name: 'native',
    async open(names) {
      const writeDirs = names.map((n) => path.join(scratchRoot, 'native-rw', n));
      for (const d of writeDirs) fs.mkdirSync(d, { recursive: true });
      return {
        dirs: names.map(() => workspace), writeDirs,
        close: async () => { for (const d of writeDirs) fs.rmSync(d, { recursive: true, force: true }); },
      };
    },
  };
}

export function cowfsProvider(daemon: CowfsDaemon, mountRoot: string, name: 'cowfs' | 'cowfs-wcache' | 'cowfs-libfuse2' = 'cowfs'): Provider {
  return {
    name,
    async open(names) {
      const dirs: string[] = [];
      const agents: string[] = [];
      try {
        for (const n of names) {
          const dir = path.join(mountRoot, n);
          await daemon.mount(n, dir);
          agents.push(n);
          dirs.push(dir);
        }
      } catch (err) {
        for (const a of agents) await daemon.rm(a).catch(() => undefined);
        throw err;
      }
      return {
        dirs, writeDirs: dirs,
        close: async () => { for (const a of agents) await daemon.rm(a); },
      };
    },
  };
}

export function overlayProvider(kind: 'overlayfs' | 'fuse-overlayfs', workspace: string, root: string): Provider {
  const pool = new OverlayPool(kind, workspace, root);
  return {
    name: kind,
    async open(names) {
      try {
        await pool.create(names);
      } catch (err) {
        await pool.destroy(names).catch(() => undefined);
        throw err;
      }
      const dirs = names.map((n) => pool.mnt(n));
      return { dirs, writeDirs: dirs, close: () => pool.destroy(names) };
    },
  };
}
