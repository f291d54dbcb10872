import type { TreeOps } from '../overlay/contract.js';

/** What the daemon needs of a FUSE adapter (fuse-native today, native/ later): mount one tree, unmount it. */
export interface MountAdapter {
  readonly name: string;
  mount(mountpoint: string, tree: TreeOps, opts: { fsname: string; allowOther: boolean }): Promise<{ unmount(): Promise<void> }>;
}

/**
 * The FUSE adapters a daemon can use, by name. Each is loaded only when
 * chosen, so a machine without one adapter's library can still run the
 * other.
 */
export async function adapterNamed(name: string): Promise<MountAdapter> {
  switch (name) {
    case 'libfuse2': {
      const { mountTree } = await import('./fuse-native-adapter.js');
      return { name: 'libfuse2 (fuse-native)', mount: (mp, tree, opts) => mountTree(mp, tree, opts) };
    }
    default:
      throw new Error(`unknown FUSE adapter ${JSON.stringify(name)} (available: libfuse2)`);
  }
}
