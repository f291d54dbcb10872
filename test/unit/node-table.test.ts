import { describe, expect, it } from 'vitest';
import { NodeTable, ROOT_ID } from '../../src/fuse/node-table.js';

describe('NodeTable: the libfuse 3 adapter\'s node ids ↔ paths', () => {
  it('counts lookups, keeps one node per path, and drops it at the last FORGET', () => {
    const t = new NodeTable();
    const a = t.lookup('a', false);
    expect(t.lookup('a', false)).toBe(a);
    expect(a.lookups).toBe(2);
    t.forget(a.id, 1);
    expect(t.pathOf(a.id)).toBe('a');
    t.forget(a.id, 1);
    expect(() => t.node(a.id)).toThrow(/unknown node/);
    // Never reused: the kernel may still hold the old id in a request in flight.
    expect(t.lookup('a', false).id).toBeGreaterThan(a.id);
    t.forget(ROOT_ID, 100);
    expect(t.pathOf(ROOT_ID)).toBe('');
  });

  it('a renamed directory takes what the kernel knows below it; the target it replaced is detached', () => {
    const t = new NodeTable();
    const d = t.lookup('d', true);
    const f = t.lookup('d/sub/f', false);
    const old = t.lookup('e', true);
    t.renamed('d', 'e');
    expect(t.pathOf(d.id)).toBe('e');
    expect(t.pathOf(f.id)).toBe('e/sub/f');
    expect(t.at('d/sub/f')).toBeUndefined();
    expect(() => t.pathOf(old.id)).toThrow(/removed/);
  });

  it('an unlinked file keeps its node while a handle is open, and goes with the last one', () => {
    const t = new NodeTable();
    const f = t.lookup('f', false);
    (f.open ??= new Set()).add(7);
    t.removed('f');
    expect(() => t.pathOf(f.id)).toThrow(/removed/);
    t.forget(f.id, 1);
    expect(t.node(f.id)).toBe(f);
    t.closed(f.id, 7);
    expect(() => t.node(f.id)).toThrow(/unknown node/);
  });

  it('a retired file is found again as a new node (a fresh inode), the old one still answers by path', () => {
    const t = new NodeTable();
    const f = t.lookup('f', false);
    t.retire('f');
    const g = t.lookup('f', false);
    expect(g.id).not.toBe(f.id);
    expect(t.pathOf(f.id)).toBe('f');
    // A directory is never retired: processes may sit in it.
    const d = t.lookup('d', true);
    t.retire('d');
    expect(t.lookup('d', true)).toBe(d);
  });

  it('a retired file follows its path: renamed with it (also its directory), detached when unlinked or replaced', () => {
    const t = new NodeTable();
    const f = t.lookup('dir/f', false);
    t.retire('dir/f');
    expect(t.isRetired(f)).toBe(true);
    const g = t.lookup('dir/f', false);
    expect(t.allAt('dir/f')).toEqual([g, f]);
    t.renamed('dir/f', 'dir/g');
    expect([t.pathOf(f.id), t.pathOf(g.id)]).toEqual(['dir/g', 'dir/g']);
    t.lookup('dir', true);
    t.renamed('dir', 'moved');
    expect(t.allAt('moved/g')).toEqual([g, f]);
    // Replaced by another file: neither stands for the new one.
    const h = t.lookup('new', false);
    t.renamed('new', 'moved/g');
    expect(t.allAt('moved/g')).toEqual([h]);
    expect([f.path, g.path]).toEqual([null, null]);
    // Unlinked while only its retired node is known.
    const k = t.lookup('k', false);
    t.retire('k');
    t.removed('k');
    expect(k.path).toBeNull();
    expect(t.allAt('k')).toEqual([]);
    // Forgotten: it leaves the table.
    const m = t.lookup('m', false);
    t.retire('m');
    t.forget(m.id, 1);
    expect(t.allAt('m')).toEqual([]);
  });

  it('a path that changed type under the kernel gets a new node', () => {
    const t = new NodeTable();
    const f = t.lookup('x', false);
    const d = t.lookup('x', true);
    expect(d.id).not.toBe(f.id);
    expect(() => t.pathOf(f.id)).toThrow(/removed/);
  });
});
