import type { MountHandle, MountOptions } from './adapter-common.js';
import type { TreeOps } from '../overlay/contract.js';
import type { StartWriteback } from '../store/sequential-write.js';

/** What the daemon needs of a FUSE adapter: mount one tree, unmount it. */
export interface MountAdapter {
  readonly name: string;
  mount(mountpoint: string, tree: TreeOps, opts: MountOptions): Promise<MountHandle>;
  /** How the store may start scratch files' disk writes early, if the adapter's addon can (ScratchFiles.writeback). */
  readonly writeback?: StartWriteback;
}

export const ADAPTER_NAMES = ['libfuse3', 'libfuse2'] as const;

/**
 * The FUSE adapters a daemon can use, by name. Each is loaded only when
 * chosen, so a machine without one adapter's library can still run the
 * other.
 */
export async function adapterNamed(name: string): Promise<MountAdapter> {
  switch (name) {
    case 'libfuse3': {
      const { mountTree, libfuse3Binding } = await import('./libfuse3-adapter.js');
      const b = libfuse3Binding();
      return { name: 'libfuse3 (native)', mount: (mp, tree, opts) => mountTree(mp, tree, opts), writeback: b.syncFileRange };
    }
    case 'libfuse2': {
      const { mountTree } = await import('./fuse-native-adapter.js');
      return { name: 'libfuse2 (fuse-native)', mount: (mp, tree, opts) => mountTree(mp, tree, opts) };
    }
    default:
      throw new Error(`unknown FUSE adapter ${JSON.stringify(name)} (available: ${ADAPTER_NAMES.join(', ')})`);
  }
}

/** The default: the native libfuse 3 adapter on Linux when it loads, else libfuse 2 (with the reason). */
export async function defaultAdapter(): Promise<{ adapter: MountAdapter; fallback?: string }> {
  if (process.platform === 'linux') {
    try {
      return { adapter: await adapterNamed('libfuse3') };
    } catch (err) {
      return { adapter: await adapterNamed('libfuse2'), fallback: `libfuse3 adapter unavailable: ${(err as Error).message}` };
    }
  }
  return { adapter: await adapterNamed('libfuse2'), fallback: `libfuse3 adapter needs Linux (this is ${process.platform})` };
}
