/**
 * One budget for the node handles of every libfuse 3 mount in the process.
 * A node's own handle may hold a descriptor or two (the file it reads, its
 * scratch file), and the daemon may open 20,000 at most (a hard limit here):
 * a cap per mount let six mounts reading at once hold 9,520 descriptors, so
 * a dozen would have failed opens with EMFILE. Past the budget, the mount
 * holding the most gives back its least recently used handle.
 */

/** What the budget asks of a mount: how many handles it holds, and to give one back. */
export interface HandleHolder {
  readonly heldHandles: number;
  /** Releases its least recently used unpinned handle but `keep`'s; false if it has none. */
  releaseOldest(keep: number): boolean;
}

/** Node handles for the whole daemon (each may hold two descriptors; sockets, lmdb and pins need the rest). */
export const DAEMON_NODE_HANDLES = 6144;

export class HandleBudget {
  /** The mounts that hold handles now (a mount leaves when it holds none). */
  private readonly holders = new Set<HandleHolder>();

  constructor(readonly max: number) {}

  get held(): number {
    let n = 0;
    for (const h of this.holders) n += h.heldHandles;
    return n;
  }

  /**
   * `taker` took a handle for node `keep`: while the mounts hold more than the
   * budget, the one holding the most gives back its oldest (pinned handles
   * are never given back, so it may stay over).
   */
  took(taker: HandleHolder, keep: number): void {
    this.holders.add(taker);
    let over = this.held - this.max;
    while (over > 0) {
      const byMost = [...this.holders].sort((a, b) => b.heldHandles - a.heldHandles);
      if (!byMost.some((h) => h.releaseOldest(h === taker ? keep : 0))) return;
      over--;
    }
  }

  /** `holder` holds no handle any more. */
  emptied(holder: HandleHolder): void {
    this.holders.delete(holder);
  }
}

/** The daemon's budget, shared by its mounts. */
export const daemonHandles = new HandleBudget(DAEMON_NODE_HANDLES);
