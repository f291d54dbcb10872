/**
 * The libfuse 3 adapter's node ids: the numbers the kernel names files and
 * directories by, each bound to the path it has now in the tree. A node
 * lives while the kernel holds lookups of it (FORGET gives them back), so
 * ids are never reused within a mount (generation 0 stays unique). A
 * rename moves a node and everything the kernel knows below it; an unlink
 * detaches it (its open files still work by handle).
 */
import { FsError } from '../overlay/contract.js';
import { isWithin, reroot } from '../overlay/paths.js';

export const ROOT_ID = 1;

export interface FuseNode {
  readonly id: number;
  /** Its path now, or null once unlinked or replaced. */
  path: string | null;
  lookups: number;
  isDir: boolean;
  /** The adapter's handles open on it (used to stat a detached file); made at the first (most nodes are only looked up). */
  open?: Set<number>;
  /**
   * Set on a file node the kernel may hold across a change of its content (libfuse 3 without the
   * writeback cache): the kernel still believes the old size, so what it writes at offsets from
   * `from` on (a writer going on at its file offset) is placed `shift` bytes further, after the new
   * content's end. Its first O_APPEND write ends it: that goes at the file's end, and the kernel is
   * told the real size.
   */
  tail?: { from: number; shift: number };
}

export class NodeTable {
  private readonly byId = new Map<number, FuseNode>();
  private readonly byPath = new Map<string, FuseNode>();
  /**
   * Files retired at a path (retire), by that path: the kernel may still hold
   * them open, so they follow the path's renames and unlinks as its node
   * does (the same file to whoever holds them), never another file later put
   * at their old name.
   */
  private readonly retired = new Map<string, Set<FuseNode>>();
  private nextId = ROOT_ID + 1;

  constructor() {
    const root: FuseNode = { id: ROOT_ID, path: '', lookups: 1, isDir: true };
    this.byId.set(ROOT_ID, root);
    this.byPath.set('', root);
  }

  get size(): number {
    return this.byId.size;
  }

  node(id: number): FuseNode {
    const n = this.byId.get(id);
    if (!n) throw new FsError('ENOENT', `unknown node ${id}`);
    return n;
  }

  /** The path of a node that is still in the tree; ENOENT once it was unlinked. */
  pathOf(id: number): string {
    const p = this.node(id).path;
    if (p === null) throw new FsError('ENOENT', `node ${id} was removed`);
    return p;
  }

  /** The node now at `p`, if the kernel knows one. */
  at(p: string): FuseNode | undefined {
    return this.byPath.get(p);
  }

  /** The names in the root directory the kernel holds nodes of. */
  topNames(): string[] {
    const names: string[] = [];
    for (const p of this.byPath.keys()) if (p !== '' && !p.includes('/')) names.push(p);
    return names;
  }

  /** Every node standing for the file at `p`: its node and those retired there. */
  allAt(p: string): FuseNode[] {
    const n = this.byPath.get(p);
    const old = this.retired.get(p);
    return [...(n ? [n] : []), ...(old ?? [])];
  }

  /** One more lookup of `p` the kernel will hold (an entry reply): the node already there, or a new one. */
  lookup(p: string, isDir: boolean): FuseNode {
    let n = this.byPath.get(p);
    if (n && n.isDir !== isDir) {
      // Replaced under the kernel by something of another type (a rebase): a new node.
      this.detach(n);
      n = undefined;
    }
    if (!n) {
      n = { id: this.nextId++, path: p, lookups: 0, isDir };
      this.byId.set(n.id, n);
      this.byPath.set(p, n);
    }
    n.lookups++;
    return n;
  }

  forget(id: number, count: number): void {
    const n = this.byId.get(id);
    if (!n || id === ROOT_ID) return;
    n.lookups -= count;
    if (n.lookups <= 0 && !n.open?.size) this.drop(n);
  }

  /** A handle on `id` closed: a node the kernel already forgot goes with its last handle. */
  closed(id: number, fh: number): void {
    const n = this.byId.get(id);
    if (!n) return;
    n.open?.delete(fh);
    if (n.lookups <= 0 && !n.open?.size && id !== ROOT_ID) this.drop(n);
  }

  /**
   * The next lookup of `p` gets a new node (a fresh inode in the kernel);
   * the old one keeps answering by path until the kernel forgets it.
   */
  retire(p: string): void {
    const n = this.byPath.get(p);
    if (!n || n.isDir) return;
    this.byPath.delete(p);
    this.retiredAt(p).add(n);
  }

  /** Whether `n` was retired (an invalidation gave its path a new node) and still has that path. */
  isRetired(n: FuseNode): boolean {
    return n.path !== null && this.retired.get(n.path)?.has(n) === true;
  }

  private retiredAt(p: string): Set<FuseNode> {
    let set = this.retired.get(p);
    if (!set) this.retired.set(p, (set = new Set()));
    return set;
  }

  /** Retired files at `p` or below it. */
  private retiredWithin(p: string): [string, Set<FuseNode>][] {
    return [...this.retired].filter(([q]) => isWithin(q, p));
  }

  /** `p` was unlinked or removed: its node (and any below) no longer has a path. */
  removed(p: string): void {
    const n = this.byPath.get(p);
    if (n) this.detach(n);
    else this.detachRetired(p);
  }

  /** `from` was renamed to `to`: what was at `to` is gone, `from` and what lies below it move. */
  renamed(from: string, to: string): void {
    const target = this.byPath.get(to);
    const moving = this.byPath.get(from);
    if (target && target !== moving) this.detach(target);
    if (from !== to) {
      this.detachRetired(to);
      for (const [q, set] of this.retiredWithin(from)) {
        this.retired.delete(q);
        const moved = reroot(q, from, to);
        for (const n of set) {
          n.path = moved;
          this.retiredAt(moved).add(n);
        }
      }
    }
    if (!moving) return;
    this.byPath.delete(from);
    moving.path = to;
    this.byPath.set(to, moving);
    if (!moving.isDir) return;
    // A copy: the loop below inserts into the map it would iterate.
    const below = [...this.byPath].filter(([q]) => q !== to && isWithin(q, from));
    for (const [q] of below) this.byPath.delete(q);
    for (const [q, n] of below) {
      const moved = reroot(q, from, to);
      n.path = moved;
      this.byPath.set(moved, n);
    }
  }

  private detach(n: FuseNode): void {
    const p = n.path;
    if (p === null) return;
    this.byPath.delete(p);
    n.path = null;
    this.detachRetired(p);
    if (!n.isDir) return;
    // Deleting while iterating a Map is safe: no copy of a table that can hold every node.
    for (const [q, m] of this.byPath) {
      if (isWithin(q, p)) {
        this.byPath.delete(q);
        m.path = null;
      }
    }
  }

  /** The retired files at `p` or below lose their path with it. */
  private detachRetired(p: string): void {
    for (const [q, set] of this.retiredWithin(p)) {
      this.retired.delete(q);
      for (const n of set) n.path = null;
    }
  }

  private drop(n: FuseNode): void {
    this.byId.delete(n.id);
    if (n.path === null) return;
    if (this.byPath.get(n.path) === n) this.byPath.delete(n.path);
    const old = this.retired.get(n.path);
    if (old?.delete(n) && old.size === 0) this.retired.delete(n.path);
  }
}
