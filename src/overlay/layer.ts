import type { LayerOp, RecordedChange } from '../events/types.js';
import type { Entry } from './entry.js';
import { baseName, join, parentOf, reroot } from './paths.js';

/** What a layer says about a path: its own entry, or the ancestor entry that decides for it. */
export interface Probe {
  entry: Entry;
  /** Where the entry sits: the path itself, or one of its ancestors. */
  at: string;
}

/** A change to persist: path → new entry, or undefined for removed. */
export type LayerChange = [path: string, entry: Entry | undefined];

/** Changes as events record them (null for removed: msgpack keeps null, not undefined). */
export function toRecorded(changes: readonly LayerChange[]): RecordedChange[] {
  return changes.map(([p, e]) => [p, e ?? null]);
}

export function fromRecorded(changes: readonly RecordedChange[]): LayerChange[] {
  return changes.map(([p, e]) => [p, e ?? undefined]);
}

/**
 * One layer: path → entry, with an index of children per directory so
 * readdir and subtree moves never scan the whole layer. Working layers and
 * frozen commit layers are both Layers; `apply` is the only way to change
 * one, so live writes and replay share it.
 */
export class Layer {
  private readonly entries = new Map<string, Entry>();
  /** dir → names of the layer's entries directly in it. */
  private readonly children = new Map<string, Set<string>>();

  constructor(entries?: Iterable<[string, Entry]>) {
    if (entries) for (const [p, e] of entries) this.set(p, e);
  }

  get size(): number {
    return this.entries.size;
  }

  get(p: string): Entry | undefined {
    return this.entries.get(p);
  }

  /** Names of the layer's own entries in `dir` (whiteouts included). */
  namesIn(dir: string): Iterable<string> {
    return this.children.get(dir) ?? [];
  }

  entriesList(): IterableIterator<[string, Entry]> {
    return this.entries.entries();
  }

  clone(): Layer {
    return new Layer(this.entries);
  }

  /**
   * The overlay lookup for one layer: the path's own entry, else the deepest
   * ancestor that changes what lies below (a whiteout or non-directory hides
   * it; an opaque directory stops inheritance; a redirect moves it). Walks
   * down from the root and stops as soon as the layer holds nothing deeper,
   * so paths the layer never touched cost one or two map lookups.
   */
  probe(p: string): Probe | undefined {
    const own = this.entries.get(p);
    return own ? { entry: own, at: p } : this.probeAbove(p);
  }

  /** The deciding ancestor entry of `p`, ignoring an entry at `p` itself. */
  probeAbove(p: string): Probe | undefined {
    let found: Probe | undefined;
    let anc = '';
    for (let i = 0; ; i++) {
      if (!this.children.has(anc)) return found;
      const next = p.indexOf('/', i);
      if (next < 0) return found;
      anc = p.slice(0, next);
      const e = this.entries.get(anc);
      if (e) {
        if (e.kind !== 'dir') return { entry: e, at: anc };
        if (e.opaque || e.redirect !== null) found = { entry: e, at: anc };
      }
      i = next;
    }
  }

  /** Applies one operation; returns what changed, for the owner to persist. */
  apply(op: LayerOp): LayerChange[] {
    const changes: LayerChange[] = [];
    const set = (p: string, e: Entry) => { this.set(p, e); changes.push([p, e]); };
    const drop = (p: string) => {
      for (const q of this.subtree(p)) { this.unset(q); changes.push([q, undefined]); }
    };
    switch (op.type) {
      case 'put': case 'truncate': case 'mkdir': case 'symlink':
        set(op.path, op.entry);
        break;
      case 'delete': case 'rmdir':
        drop(op.path);
        if (op.whiteout) set(op.path, { kind: 'whiteout' });
        break;
      case 'move': {
        const moved = this.subtree(op.from).filter((q) => q !== op.from).map((q) => [q, this.entries.get(q)!] as const);
        drop(op.from);
        drop(op.to);
        set(op.to, op.entry);
        for (const [q, e] of moved) set(reroot(q, op.from, op.to), e);
        if (op.whiteout) set(op.from, { kind: 'whiteout' });
        break;
      }
      case 'chmod': case 'chown': case 'utimens': {
        const e = this.entries.get(op.path);
        if (!e || e.kind === 'whiteout') throw new Error(`${op.type} of ${op.path}: not in the layer`);
        const next = op.type === 'chmod' ? { ...e, mode: op.mode }
          : op.type === 'chown' ? { ...e, uid: op.uid, gid: op.gid }
          : { ...e, mtimeMs: op.mtimeMs };
        set(op.path, next);
        break;
      }
    }
    return changes;
  }

  /** Sets or removes entries as they are (a commit's or a rebase's recorded changes). */
  applyChanges(changes: readonly LayerChange[]): void {
    for (const [p, e] of changes) {
      if (e) this.set(p, e);
      else this.unset(p);
    }
  }

  /** What turns `this` into `next`: removals first, then entries set. */
  diff(next: Layer): LayerChange[] {
    const out: LayerChange[] = [];
    for (const p of this.entries.keys()) if (!next.entries.has(p)) out.push([p, undefined]);
    for (const [p, e] of next.entries) if (this.entries.get(p) !== e) out.push([p, e]);
    return out;
  }

  /** The path and every entry of the layer under it. */
  private subtree(p: string): string[] {
    const out: string[] = [];
    if (this.entries.has(p)) out.push(p);
    // The children index also links directories that are not entries themselves: only entries count.
    const walk = (dir: string) => {
      for (const name of this.children.get(dir) ?? []) {
        const q = join(dir, name);
        if (this.entries.has(q)) out.push(q);
        walk(q);
      }
    };
    if (this.children.has(p)) walk(p);
    return out;
  }

  private set(p: string, e: Entry): void {
    this.entries.set(p, e);
    // Index every ancestor so probe() can tell at once that nothing lies deeper.
    for (let q = p; q !== ''; q = parentOf(q)) {
      const dir = parentOf(q);
      let names = this.children.get(dir);
      if (!names) this.children.set(dir, (names = new Set()));
      if (names.has(baseName(q))) break;
      names.add(baseName(q));
    }
  }

  private unset(p: string): void {
    this.entries.delete(p);
    // Drop index links that no longer lead to an entry.
    for (let q = p; q !== ''; q = parentOf(q)) {
      if (this.entries.has(q) || this.children.has(q)) break;
      const dir = parentOf(q);
      const names = this.children.get(dir);
      names?.delete(baseName(q));
      if (names && names.size > 0) break;
      this.children.delete(dir);
    }
  }
}
