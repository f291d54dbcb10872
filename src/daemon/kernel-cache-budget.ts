/**
 * The daemon's memory grows with the node ids the kernel holds in its mounts
 * (~1 KB each, measured: the node table, the attributes cached in C), and
 * the kernel, with memory to spare, holds every name an agent ever looked
 * at: 100 agents that each ran `git status` over a 33,586-entry tree would
 * keep 3.4 million. So the daemon keeps them to a budget: past it, the
 * mounts idle longest are asked to drop their kernel caches (as
 * drop_caches would, for one mount): their nodes go at the FORGETs that
 * follow, and their next access looks names up again, cold.
 */

/** Node ids for the whole daemon: ~150 MiB, so 100 mounted agents stay under 300 MiB. */
export const DAEMON_KERNEL_NODES = 150_000;
/** A mount with a request this recent is not dropped: it is working. */
export const BUSY_MS = 60_000;
/** How often the daemon checks. */
export const CHECK_MS = 10_000;

export interface CacheUse {
  /** Node ids the kernel holds in the mount. */
  nodes: number;
  /** Its last request (ms since the epoch). */
  lastRequestAt: number;
  /** When it was last asked to drop (ms since the epoch; 0: never). */
  droppedAt: number;
}

/**
 * Which mounts (indexes into `uses`) drop their kernel caches so that the
 * daemon holds at most `max` node ids: the idlest first; none working
 * (a request within `busyMs`) and none dropped since its last request (its
 * FORGETs may still be coming).
 */
export function mountsToDrop(uses: readonly CacheUse[], max: number, now: number, busyMs = BUSY_MS): number[] {
  let held = uses.reduce((n, u) => n + u.nodes, 0);
  const drop: number[] = [];
  const idlest = uses.map((u, i) => ({ u, i }))
    .filter(({ u }) => u.nodes > 1 && now - u.lastRequestAt >= busyMs && u.droppedAt <= u.lastRequestAt)
    .sort((a, b) => a.u.lastRequestAt - b.u.lastRequestAt);
  for (const { u, i } of idlest) {
    if (held <= max) break;
    drop.push(i);
    held -= u.nodes;
  }
  return drop;
}
