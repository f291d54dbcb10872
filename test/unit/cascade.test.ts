import { afterEach, describe, expect, it } from 'vitest';
import { Cascade } from '../../src/cascade/cascade.js';
import type { Overlay } from '../../src/overlay/overlay.js';
import { openOverlay, readFile, removeTempDirs, snapshot, writeFile } from '../helpers/core.js';

const opened: Overlay[] = [];
afterEach(async () => {
  for (const ov of opened.splice(0)) await ov.close();
  removeTempDirs();
});

const lines = (n: number, tag = '') => Array.from({ length: n }, (_, i) => `line ${i + 1}${tag}`);
const text = (ls: string[]) => `${ls.join('\n')}\n`;
function edit(content: string, lineNo: number, to: string): string {
  const ls = content.split('\n');
  ls[lineNo - 1] = to;
  return ls.join('\n');
}

/** p (root) → c → g, plus siblings; all created before the parent's change. */
async function family(children = 1) {
  const { ov } = await openOverlay({ 'app.txt': text(lines(60)), 'other.txt': 'other\n' });
  opened.push(ov);
  const cascade = new Cascade(ov);
  ov.createAgent('p', null);
  writeFile(ov.tree('p'), 'app.txt', text(lines(60)));
  ov.commit('p', 'p0');
  for (let i = 0; i < children; i++) ov.createAgent(i === 0 ? 'c' : `c${i}`, 'p');
  ov.createAgent('g', 'c');
  return { ov, cascade };
}

describe('cascade rebase', () => {
  it('merges a parent edit at line 10 with a child edit at line 50, down to the grandchild', async () => {
    const { ov, cascade } = await family(10);
    const c = ov.tree('c');
    writeFile(c, 'app.txt', edit(readFile(c, 'app.txt'), 50, 'child 50'));
    ov.commit('c', 'c1');
    // g was based on c's first head; bring it to c1 first.
    cascade.fromCommit('c');
    expect(readFile(ov.tree('g'), 'app.txt')).toContain('child 50');
    writeFile(ov.tree('p'), 'app.txt', edit(readFile(ov.tree('p'), 'app.txt'), 10, 'parent 10'));
    writeFile(ov.tree('p'), 'new-in-parent.txt', 'new\n');
    ov.commit('p', 'p1');
    const report = cascade.fromCommit('p');
    expect(report.conflicted).toEqual([]);
    expect(report.rebased).toContain('g');
    expect(report.rebased.length).toBe(11); // 10 children + the grandchild
    for (const agent of ['c', 'g']) {
      const content = readFile(ov.tree(agent), 'app.txt');
      expect(content).toContain('parent 10');
      expect(content).toContain('child 50');
      expect(readFile(ov.tree(agent), 'new-in-parent.txt')).toBe('new\n');
    }
    // A sibling that never touched the file simply shows the new head.
    expect(readFile(ov.tree('c5'), 'app.txt')).toBe(readFile(ov.tree('p'), 'app.txt'));
    expect(ov.usage('c5').changed).toBe(0);
    // Replay rebuilds every tree exactly, rebases included.
    for (const agent of ['p', 'c', 'g', 'c5']) expect(snapshot(ov.replay(agent), ov)).toEqual(snapshot(ov.tree(agent).tree, ov));
  });

  it('stops at a conflict with git markers, leaves the grandchild alone until resolved', async () => {
    const { ov, cascade } = await family();
    const c = ov.tree('c');
    writeFile(c, 'app.txt', edit(readFile(c, 'app.txt'), 20, 'child 20'));
    ov.commit('c', 'c1');
    cascade.fromCommit('c');
    const gBefore = readFile(ov.tree('g'), 'app.txt');
    writeFile(ov.tree('p'), 'app.txt', edit(readFile(ov.tree('p'), 'app.txt'), 20, 'parent 20'));
    ov.commit('p', 'p1');
    const report = cascade.fromCommit('p');
    expect(report.conflicted).toEqual([{ agent: 'c', paths: ['app.txt'] }]);
    const conflicted = readFile(c, 'app.txt');
    expect(conflicted).toContain('<<<<<<< c\nchild 20\n||||||| p@');
    expect(conflicted).toContain('=======\nparent 20\n>>>>>>> p@');
    expect(readFile(ov.tree('g'), 'app.txt')).toBe(gBefore);
    const rec = ov.agent('c').conflicts!['app.txt']!;
    expect(rec.kind).toBe('content');
    expect(ov.blobs.get(rec.theirs!).toString()).toContain('parent 20');
    expect(rec.hunks[0]).toMatchObject({ ours: 'child 20\n', theirs: 'parent 20\n' });
    // Resolving resumes the cascade: the grandchild gets the resolution.
    const after = cascade.resolve('c', 'app.txt', 'theirs');
    expect(after.rebased).toEqual(['g']);
    expect(readFile(ov.tree('g'), 'app.txt')).toContain('parent 20');
    expect(readFile(ov.tree('g'), 'app.txt')).not.toContain('<<<<<<<');
    const types = [...ov.log.byAgent('c')].map((e) => e.type);
    expect(types).toContain('WORKTREE_CONFLICT_DETECTED');
    expect(types).toContain('WORKTREE_CONFLICT_RESOLVED');
    expect(snapshot(ov.replay('g'), ov)).toEqual(snapshot(ov.tree('g').tree, ov));
  });

  it('writing the file without markers and committing resolves too', async () => {
    const { ov, cascade } = await family();
    writeFile(ov.tree('c'), 'app.txt', edit(readFile(ov.tree('c'), 'app.txt'), 5, 'child 5'));
    writeFile(ov.tree('p'), 'app.txt', edit(readFile(ov.tree('p'), 'app.txt'), 5, 'parent 5'));
    ov.commit('p', 'p1');
    expect(cascade.fromCommit('p').conflicted.length).toBe(1);
    // Still markers: the commit leaves the conflict (and the cascade) where they are.
    ov.commit('c', 'still conflicted');
    expect(cascade.afterCommitOf('c').paused).toEqual(['c']);
    writeFile(ov.tree('c'), 'app.txt', edit(readFile(ov.tree('p'), 'app.txt'), 5, 'both 5'));
    ov.commit('c', 'resolved by hand');
    const r = cascade.afterCommitOf('c');
    expect(ov.agent('c').conflicts).toEqual({});
    expect(r.rebased).toEqual(['g']);
    expect(readFile(ov.tree('g'), 'app.txt')).toContain('both 5');
  });

  it('handles the same change on both sides, delete vs modify, and binary files', async () => {
    const { ov, cascade } = await family();
    const c = ov.tree('c');
    const p = ov.tree('p');
    writeFile(c, 'other.txt', 'same\n');
    writeFile(p, 'other.txt', 'same\n');
    c.unlink('app.txt');
    writeFile(p, 'app.txt', edit(readFile(p, 'app.txt'), 1, 'changed'));
    writeFile(c, 'bin.dat', Buffer.from([0, 1, 2, 3]));
    writeFile(p, 'bin.dat', Buffer.from([0, 9, 9, 9]));
    ov.commit('p', 'p1');
    const r = cascade.fromCommit('p');
    expect(r.conflicted[0]!.paths.sort()).toEqual(['app.txt', 'bin.dat']);
    const conflicts = ov.agent('c').conflicts!;
    expect(conflicts['app.txt']!.kind).toBe('delete-modify');
    expect(readFile(c, 'app.txt')).toContain('changed'); // git keeps the modified side
    expect(conflicts['bin.dat']!.kind).toBe('binary');
    expect([...Buffer.from(readFile(c, 'bin.dat'), 'latin1')]).toEqual([0, 1, 2, 3]); // ours kept, no markers
    expect(readFile(c, 'other.txt')).toBe('same\n');
    expect(conflicts['other.txt']).toBeUndefined();
  });
});
