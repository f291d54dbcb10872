import type { Store } from '../store/env.js';

/** Per-workspace settings, kept in the store. */
export interface Settings {
  /**
   * Character-level refinement of conflicting hunks (diff-match-patch).
   * Off by default: on 3,720 real merges it resolved about as many hunks
   * wrongly as rightly; every hunk it resolves is recorded in the event.
   */
  refine: boolean;
  /** gc drops agents removed more than this many hours ago (their layers, commits and the blobs only they used). */
  keepRemovedHours: number;
  /**
   * The kernel's writeback cache in mounts made from now on (libfuse 3; libfuse 2 has none).
   * Off by default: with it, every close() makes the next stat of that file a round trip to the
   * daemon, which is most of what reading many files costs (tar of 30,654 files 2.4x native with
   * it, 1.1x without); without it, every write() is one (4 KiB random writes ~0.2x native IOPS
   * instead of ~1.8x). docs/ARCHITECTURE.md, "Where the kernel sets the floor".
   */
  writeCache: boolean;
}

const DEFAULTS: Settings = { refine: false, keepRemovedHours: 168, writeCache: false };

export class SettingsStore {
  constructor(private readonly store: Store) {}

  all(): Settings {
    return { ...DEFAULTS, ...(this.store.dbs.meta.get('settings') as Partial<Settings> | undefined) };
  }

  set<K extends keyof Settings>(key: K, value: unknown): void {
    const cur = this.all();
    if (typeof cur[key] === 'boolean') {
      if (typeof value !== 'boolean' && !['on', 'off', 'true', 'false'].includes(String(value))) {
        throw new Error(`setting ${key} takes on or off`);
      }
      (cur as unknown as Record<string, unknown>)[key] = value === true || value === 'on' || value === 'true';
    } else if (typeof cur[key] === 'number') {
      const n = Number(value);
      if (value === '' || !Number.isFinite(n) || n < 0) throw new Error(`setting ${key} takes a number ≥ 0`);
      (cur as unknown as Record<string, unknown>)[key] = n;
    }
    this.store.dbs.meta.putSync('settings', cur);
  }
}
