import { describe, expect, it } from 'vitest';
import { mountsToDrop } from '../../src/daemon/kernel-cache-budget.js';

describe('kernel cache budget: which mounts drop their kernel caches', () => {
  const now = 1_000_000;
  const use = (nodes: number, idleMs: number, droppedAgoMs?: number) =>
    ({ nodes, lastRequestAt: now - idleMs, droppedAt: droppedAgoMs === undefined ? 0 : now - droppedAgoMs });

  it('none within the budget; past it the idlest first, only as many as bring it back', () => {
    const uses = [use(40, 70_000), use(40, 200_000), use(40, 100_000)];
    expect(mountsToDrop(uses, 120, now)).toEqual([]);
    expect(mountsToDrop(uses, 100, now)).toEqual([1]);
    expect(mountsToDrop(uses, 50, now)).toEqual([1, 2]);
  });

  it('never a working mount, an empty one, or one dropped since its last request', () => {
    const uses = [use(500, 1_000), use(1, 500_000), use(500, 500_000, 100_000), use(500, 90_000)];
    expect(mountsToDrop(uses, 100, now)).toEqual([3]);
    expect(mountsToDrop([use(500, 1_000)], 100, now)).toEqual([]);
  });
});
