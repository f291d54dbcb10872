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
}

const DEFAULTS: Settings = { refine: false, keepRemovedHours: 168 };

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
