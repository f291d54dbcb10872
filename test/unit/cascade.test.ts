import fs from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { Cascade } from '../../src/cascade/cascade.js';
import { WorkspaceWatcher } from '../../src/cascade/workspace-watcher.js';
import { land } from '../../src/land/land.js';
import type { Overlay } from '../../src/overlay/overlay.js';
import { errnoOf, openOverlay, readFile, removeTempDirs, snapshot, writeFile } from '../helpers/core.js';

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

/** p (root) → c → g over a workspace of `files`; p has committed once. */
async function generations(files: Record<string, string>) {
  const { ov } = await openOverlay(files);
  opened.push(ov);
  const cascade = new Cascade(ov);
  ov.createAgent('p', null);
  ov.commit('p', 'p0');
  ov.createAgent('c', 'p');
  ov.createAgent('g', 'c');
  return { ov, cascade, p: ov.tree('p'), c: ov.tree('c'), g: ov.tree('g') };
}

describe('cascade rebase', () => {
  it('a directory deleted inside one the child moved (mv a a2; rm -rf a2/d, or made again) shows what the parent adds to a/d later, and landing keeps it (review)', async () => {
    for (const again of [false, true]) {
      const { ov, cascade, p, c } = await generations({ 'a/d/f': 'f\n', 'a/keep': 'k\n' });
      c.rename('a', 'a2', 0);
      c.unlink('a2/d/f');
      c.rmdir('a2/d');
      if (again) {
        c.mkdir('a2/d', 0o755, 0, 0);
        writeFile(c, 'a2/d/mine', 'm\n');
      }
      ov.commit('c', 'c1');
      cascade.fromCommit('c');
      writeFile(p, 'a/d/new', 'new\n');
      ov.commit('p', 'p1');
      expect(cascade.fromCommit('p').conflicted).toEqual([]);
      expect(c.readdir('a2/d').map((e) => e.name).sort()).toEqual(again ? ['mine', 'new'] : ['new']);
      await land(ov, cascade, 'c', {});
      expect(readFile(p, 'a2/d/new')).toBe('new\n');
    }
  });

  it("moves the mtime of a child's directory where the parent's commit made or removed a name (git's untracked cache trusts it)", async () => {
    const { ov, cascade } = await family();
    const c = ov.tree('c');
    const before = c.getattr('').mtimeMs;
    await new Promise((r) => setTimeout(r, 5));
    writeFile(ov.tree('p'), 'new.txt', 'n\n');
    ov.commit('p', 'p1');
    cascade.fromCommit('p');
    expect(readFile(c, 'new.txt')).toBe('n\n');
    const added = c.getattr('').mtimeMs;
    expect(added).toBeGreaterThan(before);
    // A change of content alone moves no directory's time.
    await new Promise((r) => setTimeout(r, 5));
    writeFile(ov.tree('p'), 'new.txt', 'n2\n');
    ov.commit('p', 'p2');
    cascade.fromCommit('p');
    expect(readFile(c, 'new.txt')).toBe('n2\n');
    expect(c.getattr('').mtimeMs).toBe(added);
  });

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

describe('cascade rebase of additions, modes, symlinks, deletions and binary files', () => {
  /** p (root) → c → g over a workspace with files and symlinks; p has committed once. */
  function tree() {
    return generations({
      'app.txt': text(lines(20)), 'run.sh': 'echo run\n', 'tool.sh': 'echo tool\n', 'both.sh': 'echo both\n',
      'gone.txt': text(lines(5)), 'kept.txt': text(lines(5)),
      'cur': '->v1', 'mine': '->v1', 'fought': '->v1', 'agreed': '->v1', 'was-file.txt': 'file\n',
    });
  }
  const mode = (t: { getattr(p: string): { mode: number } }, p: string) => t.getattr(p).mode & 0o7777;
  const conflictsOf = (ov: Overlay, agent: string) => ov.agent(agent).conflicts ?? {};
  const names = (t: { readdir(p: string): { name: string }[] }, d: string) => t.readdir(d).map((e) => e.name).filter((n) => !n.startsWith('.')).sort();

  it('add vs add: the same file merges, different ones conflict with an empty base section, binary keeps ours', async () => {
    const { ov, cascade, p, c, g } = await tree();
    writeFile(c, 'same.txt', 'same\n');
    writeFile(p, 'same.txt', 'same\n');
    writeFile(c, 'added.txt', 'child\nshared\n');
    writeFile(p, 'added.txt', 'parent\nshared\n');
    writeFile(c, 'added.bin', Buffer.from([0, 1]));
    writeFile(p, 'added.bin', Buffer.from([0, 2]));
    ov.commit('p', 'p1');
    const r = cascade.fromCommit('p');
    expect(r.conflicted).toEqual([{ agent: 'c', paths: expect.arrayContaining(['added.txt', 'added.bin']) }]);
    expect(readFile(c, 'same.txt')).toBe('same\n');
    expect(conflictsOf(ov, 'c')['same.txt']).toBeUndefined();
    // As `git merge-file --diff3` with an empty base: one hunk, the common last line inside it.
    expect(readFile(c, 'added.txt')).toMatch(/^<<<<<<< c\nchild\nshared\n\|\|\|\|\|\|\| p@\d+\n=======\nparent\nshared\n>>>>>>> p@\d+\n$/);
    const added = conflictsOf(ov, 'c')['added.txt']!;
    expect(added).toMatchObject({ kind: 'content', base: null });
    expect(ov.blobs.get(added.theirs!).toString()).toBe('parent\nshared\n');
    expect([...Buffer.from(readFile(c, 'added.bin'), 'latin1')]).toEqual([0, 1]);
    expect(conflictsOf(ov, 'c')['added.bin']).toMatchObject({ kind: 'binary', base: null });
    expect(() => readFile(g, 'added.txt')).toThrow(); // g waits for c
    cascade.resolve('c', 'added.txt', 'theirs');
    const done = cascade.resolve('c', 'added.bin', 'theirs');
    expect(done.rebased).toEqual(['g']);
    expect(readFile(g, 'added.txt')).toBe('parent\nshared\n');
    expect([...Buffer.from(readFile(g, 'added.bin'), 'latin1')]).toEqual([0, 2]);
  });

  it('mode changes: a side that changed the mode wins, content merges; different modes on both sides conflict', async () => {
    const { ov, cascade, p, c, g } = await tree();
    c.chmod('app.txt', 0o755); // child: mode only
    writeFile(p, 'app.txt', edit(readFile(p, 'app.txt'), 1, 'parent 1'));
    writeFile(c, 'run.sh', 'echo run by the child\n'); // child: content only
    p.chmod('run.sh', 0o755);
    c.chmod('both.sh', 0o755); // both: the same mode
    p.chmod('both.sh', 0o755);
    writeFile(c, 'tool.sh', 'echo tool\necho child\n'); // both: modes differ
    c.chmod('tool.sh', 0o700);
    writeFile(p, 'tool.sh', 'echo parent\necho tool\n');
    p.chmod('tool.sh', 0o755);
    ov.commit('c', 'c1');
    cascade.fromCommit('c');
    ov.commit('p', 'p1');
    const r = cascade.fromCommit('p');
    expect(r.conflicted).toEqual([{ agent: 'c', paths: ['tool.sh'] }]);
    expect(readFile(c, 'app.txt')).toContain('parent 1');
    expect(mode(c, 'app.txt')).toBe(0o755);
    expect(readFile(c, 'run.sh')).toBe('echo run by the child\n');
    expect(mode(c, 'run.sh')).toBe(0o755);
    expect(mode(c, 'both.sh')).toBe(0o755);
    // The content merged cleanly; the mode keeps ours until resolved.
    expect(readFile(c, 'tool.sh')).toBe('echo parent\necho tool\necho child\n');
    expect(mode(c, 'tool.sh')).toBe(0o700);
    expect(conflictsOf(ov, 'c')['tool.sh']).toMatchObject({ kind: 'mode', modes: { base: 0o644, ours: 0o700, theirs: 0o755 } });
    expect(cascade.resolve('c', 'tool.sh', 'theirs').rebased).toEqual(['g']);
    expect(mode(c, 'tool.sh')).toBe(0o755);
    expect(readFile(g, 'tool.sh')).toBe('echo parent\necho tool\n');
    for (const [f, m] of [['app.txt', 0o755], ['run.sh', 0o755], ['tool.sh', 0o755]] as const) expect(mode(g, f)).toBe(m);
    expect(snapshot(ov.replay('g'), ov)).toEqual(snapshot(g.tree, ov));
  });

  it('symlinks: retargets on one side show, on both sides conflict and keep ours until resolved', async () => {
    const { ov, cascade, p, c, g } = await tree();
    p.unlink('cur'); p.symlink('v2', 'cur', 0, 0); // parent only
    c.unlink('mine'); c.symlink('v3', 'mine', 0, 0); // child only
    c.unlink('agreed'); c.symlink('v4', 'agreed', 0, 0); // the same on both sides
    p.unlink('agreed'); p.symlink('v4', 'agreed', 0, 0);
    c.unlink('fought'); c.symlink('child', 'fought', 0, 0); // both, differently
    p.unlink('fought'); p.symlink('parent', 'fought', 0, 0);
    c.unlink('was-file.txt'); c.symlink('elsewhere', 'was-file.txt', 0, 0); // a file made a link, and edited above
    writeFile(p, 'was-file.txt', 'file, edited\n');
    ov.commit('c', 'c1');
    cascade.fromCommit('c');
    ov.commit('p', 'p1');
    const r = cascade.fromCommit('p');
    expect(r.conflicted).toEqual([{ agent: 'c', paths: expect.arrayContaining(['fought', 'was-file.txt']) }]);
    expect(c.readlink('cur')).toBe('v2');
    expect(c.readlink('mine')).toBe('v3');
    expect(c.readlink('agreed')).toBe('v4');
    expect(c.readlink('fought')).toBe('child');
    expect(c.readlink('was-file.txt')).toBe('elsewhere');
    const fought = conflictsOf(ov, 'c')['fought']!;
    expect(fought).toMatchObject({ kind: 'symlink', targets: { base: 'v1', ours: 'child', theirs: 'parent' } });
    expect(conflictsOf(ov, 'c')['was-file.txt']).toMatchObject({ kind: 'type', targets: { base: null, ours: 'elsewhere', theirs: null } });
    cascade.resolve('c', 'fought', 'theirs');
    expect(cascade.resolve('c', 'was-file.txt', 'theirs').rebased).toEqual(['g']);
    expect(c.readlink('fought')).toBe('parent');
    expect(readFile(c, 'was-file.txt')).toBe('file, edited\n');
    expect(g.readlink('fought')).toBe('parent');
    expect(g.readlink('mine')).toBe('v3');
    expect(g.readlink('cur')).toBe('v2');
    expect(snapshot(ov.replay('c'), ov)).toEqual(snapshot(c.tree, ov));
  });

  it('a file against a directory: --theirs shows the parent’s directory, --ours keeps the child’s', async () => {
    const { ov, cascade, p, c, g } = await tree();
    writeFile(c, 'kept.txt', 'child edit\n'); // the parent makes it a directory
    p.unlink('kept.txt'); p.mkdir('kept.txt', 0o755, 0, 0); writeFile(p, 'kept.txt/inner', 'inner\n');
    c.unlink('gone.txt'); c.mkdir('gone.txt', 0o755, 0, 0); writeFile(c, 'gone.txt/mine', 'mine\n'); // the child makes it one
    writeFile(p, 'gone.txt', 'parent edit\n');
    ov.commit('p', 'p1');
    expect(cascade.fromCommit('p').conflicted).toEqual([{ agent: 'c', paths: expect.arrayContaining(['kept.txt', 'gone.txt']) }]);
    expect(conflictsOf(ov, 'c')['kept.txt']).toMatchObject({ kind: 'type' });
    cascade.resolve('c', 'kept.txt', 'theirs');
    expect(c.readdir('kept.txt').map((e) => e.name)).toContain('inner');
    expect(readFile(c, 'kept.txt/inner')).toBe('inner\n');
    expect(cascade.resolve('c', 'gone.txt', 'ours').rebased).toEqual(['g']);
    expect(readFile(c, 'gone.txt/mine')).toBe('mine\n');
    expect(readFile(g, 'kept.txt/inner')).toBe('inner\n');
    expect(snapshot(ov.replay('c'), ov)).toEqual(snapshot(c.tree, ov));
  });

  it('a directory the child deleted keeps what the parent added in it; a file the parent edited there conflicts', async () => {
    const { ov, cascade, p, c, g } = await generations({ 'd/sub/f': 'f\n', 'd/sub/edited': 'e\n', 'd/sub/deep/x': 'x\n', 'd/g': 'g\n' });
    for (const f of ['d/sub/f', 'd/sub/edited', 'd/sub/deep/x']) c.unlink(f);
    c.rmdir('d/sub/deep');
    c.rmdir('d/sub'); // rm -rf d/sub
    ov.commit('c', 'c1');
    cascade.fromCommit('c');
    writeFile(p, 'd/sub/added', 'added\n');
    writeFile(p, 'd/sub/deep/new', 'new\n');
    writeFile(p, 'd/sub/edited', 'e2\n');
    ov.commit('p', 'p1');
    // As git merges it: the child deleted the files it saw, not the ones the parent added since.
    expect(cascade.fromCommit('p').conflicted).toEqual([{ agent: 'c', paths: ['d/sub/edited'] }]);
    expect(conflictsOf(ov, 'c')['d/sub/edited']).toMatchObject({ kind: 'delete-modify', ours: null });
    expect(names(c, 'd/sub')).toEqual(['added', 'deep', 'edited']);
    expect(names(c, 'd/sub/deep')).toEqual(['new']);
    expect(readFile(c, 'd/sub/added')).toBe('added\n');
    expect(cascade.resolve('c', 'd/sub/edited', 'ours').rebased).toEqual(['g']);
    expect(names(g, 'd/sub')).toEqual(['added', 'deep']);
    expect(readFile(g, 'd/sub/deep/new')).toBe('new\n');
    expect(readFile(g, 'd/g')).toBe('g\n');
    for (const a of ['c', 'g']) expect(snapshot(ov.replay(a), ov)).toEqual(snapshot(ov.tree(a).tree, ov));
  });

  it('a directory the child made again (rm -rf d; mkdir d) shows what the parent adds in it later; landing keeps it', async () => {
    const five = text(lines(5));
    const { ov, cascade, p, c, g } = await generations({ 'd/x': 'x\n', 'd/edited': 'e\n', 'd/same': 's\n', 'd/merged': five, 'd/sub/y': 'y\n', 'keep': 'k\n' });
    for (const f of ['d/x', 'd/edited', 'd/same', 'd/merged', 'd/sub/y']) c.unlink(f);
    c.rmdir('d/sub');
    c.rmdir('d'); // rm -rf d
    c.mkdir('d', 0o755, 0, 0); // opaque: hides d/x, d/sub/y below
    c.mkdir('d/sub', 0o755, 0, 0);
    writeFile(c, 'd/sub/z', 'z\n');
    writeFile(c, 'd/same', 'mine\n');
    writeFile(c, 'd/mine', 'mine\n');
    writeFile(c, 'd/merged', edit(five, 5, 'child 5'));
    ov.commit('c', 'c1');
    cascade.fromCommit('c');
    writeFile(p, 'd/new', 'new\n');
    writeFile(p, 'd/edited', 'e2\n');
    writeFile(p, 'd/mine', 'mine\n');
    writeFile(p, 'd/merged', edit(five, 1, 'parent 1'));
    ov.commit('p', 'p1');
    // As git merges it: the child deleted the files it saw, not the ones the parent added since.
    expect(cascade.fromCommit('p').conflicted).toEqual([{ agent: 'c', paths: ['d/edited'] }]);
    expect(conflictsOf(ov, 'c')['d/edited']).toMatchObject({ kind: 'delete-modify', ours: null });
    expect(names(c, 'd')).toEqual(['edited', 'merged', 'mine', 'new', 'same', 'sub']);
    expect(readFile(c, 'd/new')).toBe('new\n');
    expect(readFile(c, 'd/same')).toBe('mine\n');
    // A file the child wrote again merges with the parent's edit, as git sees it (a change of that file).
    expect(readFile(c, 'd/merged')).toBe(edit(edit(five, 1, 'parent 1'), 5, 'child 5'));
    // The directory the child made again under d still hides what was below it.
    expect(names(c, 'd/sub')).toEqual(['z']);
    expect(cascade.resolve('c', 'd/edited', 'ours').rebased).toEqual(['g']);
    expect(names(g, 'd')).toEqual(['merged', 'mine', 'new', 'same', 'sub']);
    expect(names(g, 'd/sub')).toEqual(['z']);
    // The parent changes inside the directory made again under d: that one unfolds too.
    writeFile(p, 'd/sub/new2', 'new2\n');
    ov.commit('p', 'p2');
    expect(cascade.fromCommit('p').conflicted).toEqual([]);
    expect(names(c, 'd/sub')).toEqual(['new2', 'z']);
    expect(names(g, 'd/sub')).toEqual(['new2', 'z']);
    for (const a of ['c', 'g']) expect(snapshot(ov.replay(a), ov)).toEqual(snapshot(ov.tree(a).tree, ov));
    // Landing the child deletes what it deleted, not what the parent added since.
    await land(ov, cascade, 'c', {});
    expect(names(p, 'd')).toEqual(['merged', 'mine', 'new', 'same', 'sub']);
    expect(readFile(p, 'd/merged')).toBe(edit(edit(five, 1, 'parent 1'), 5, 'child 5'));
    expect(names(p, 'd/sub')).toEqual(['new2', 'z']);
    expect(readFile(p, 'd/new')).toBe('new\n');
    expect(readFile(p, 'keep')).toBe('k\n');
  });

  it('a directory the child made again that the parent deleted shows what the parent makes there again', async () => {
    const { ov, cascade, p, c } = await generations({ 'd/x': 'x\n' });
    c.unlink('d/x');
    c.rmdir('d');
    c.mkdir('d', 0o755, 0, 0);
    writeFile(c, 'd/mine', 'mine\n');
    ov.commit('c', 'c1');
    p.unlink('d/x');
    p.rmdir('d');
    ov.commit('p', 'p1');
    cascade.fromCommit('p');
    p.mkdir('d', 0o755, 0, 0);
    writeFile(p, 'd/back', 'back\n');
    ov.commit('p', 'p2');
    expect(cascade.fromCommit('p').conflicted).toEqual([]);
    expect(names(c, 'd')).toEqual(['back', 'mine']);
    expect(snapshot(ov.replay('c'), ov)).toEqual(snapshot(c.tree, ov));
  });

  it('a directory the child emptied by a move and deleted (mv d/sub kept; rm -rf d) shows what the parent adds in it later', async () => {
    const { ov, cascade, p, c } = await generations({ 'd/sub/f': 'f\n', 'd/other': 'o\n', 'd/old': 'old\n' });
    c.rename('d/sub', 'kept', 0);
    c.unlink('d/other');
    c.unlink('d/old');
    c.rmdir('d');
    ov.commit('c', 'c1');
    cascade.fromCommit('c');
    writeFile(p, 'd/new2', 'new2\n');
    writeFile(p, 'd/other', 'o2\n');
    writeFile(p, 'd/sub/f', 'f2\n');
    ov.commit('p', 'p1');
    expect(cascade.fromCommit('p').conflicted).toEqual([{ agent: 'c', paths: ['d/other'] }]);
    expect(conflictsOf(ov, 'c')['d/other']).toMatchObject({ kind: 'delete-modify', ours: null });
    expect(names(c, 'd')).toEqual(['new2', 'other']);
    // The moved directory shows the parent's change in it where the child moved it.
    expect(readFile(c, 'kept/f')).toBe('f2\n');
    cascade.resolve('c', 'd/other', 'ours');
    expect(snapshot(ov.replay('c'), ov)).toEqual(snapshot(c.tree, ov));
    await land(ov, cascade, 'c', {});
    expect(names(p, 'd')).toEqual(['new2']);
    expect(names(p, 'kept')).toEqual(['f']);
    expect(readFile(p, 'kept/f')).toBe('f2\n');
  });

  it('a directory the child made where the parent made a file conflicts; --theirs takes the file', async () => {
    const { ov, cascade, p, c, g } = await tree();
    c.mkdir('both', 0o755, 0, 0);
    writeFile(c, 'both/x', 'x\n');
    writeFile(p, 'both', 'parent file\n');
    ov.commit('p', 'p1');
    expect(cascade.fromCommit('p').conflicted).toEqual([{ agent: 'c', paths: ['both'] }]);
    expect(conflictsOf(ov, 'c')['both']).toMatchObject({ kind: 'type', ours: null, kinds: { base: null, ours: 'dir', theirs: 'file' } });
    expect(readFile(c, 'both/x')).toBe('x\n'); // ours stays until resolved
    expect(cascade.resolve('c', 'both', 'theirs').rebased).toEqual(['g']);
    expect(readFile(c, 'both')).toBe('parent file\n');
    expect(readFile(g, 'both')).toBe('parent file\n');
    expect(snapshot(ov.replay('c'), ov)).toEqual(snapshot(c.tree, ov));
  });

  it('a file the child added in a directory the parent made a file: a conflict, the child\'s file kept until resolved', async () => {
    const { ov, cascade, p, c, g } = await generations({ 'd/x': 'x\n', 'e/x': 'x\n' });
    c.mkdir('d/sub', 0o755, 0, 0);
    writeFile(c, 'd/sub/new', 'new\n');
    writeFile(c, 'e/new', 'new\n');
    ov.commit('c', 'c1');
    cascade.fromCommit('c');
    for (const dir of ['d', 'e']) {
      p.unlink(`${dir}/x`);
      p.rmdir(dir);
      writeFile(p, dir, 'a file now\n');
    }
    ov.commit('p', 'p1');
    expect(cascade.fromCommit('p').conflicted).toEqual([{ agent: 'c', paths: expect.arrayContaining(['d', 'e']) }]);
    expect(conflictsOf(ov, 'c')['d']).toMatchObject({ kind: 'type', base: null, ours: null });
    expect(readFile(c, 'd/sub/new')).toBe('new\n');
    expect(c.readdir('d').map((e) => e.name).filter((n) => !n.startsWith('.'))).toEqual(['sub']);
    expect(snapshot(ov.replay('c'), ov)).toEqual(snapshot(c.tree, ov));
    cascade.resolve('c', 'd', 'ours');
    expect(cascade.resolve('c', 'e', 'theirs').rebased).toEqual(['g']);
    expect(readFile(g, 'd/sub/new')).toBe('new\n');
    expect(readFile(g, 'e')).toBe('a file now\n');
    expect(snapshot(ov.replay('g'), ov)).toEqual(snapshot(g.tree, ov));
  });

  /** rm -rf d (the child has d/sub/secret and d/x); with `again`, mkdir d and write d/mine. */
  function deleteD(c: ReturnType<Overlay['tree']>, again: boolean) {
    c.unlink('d/sub/secret'); c.rmdir('d/sub'); c.unlink('d/x'); c.rmdir('d');
    if (!again) return;
    c.mkdir('d', 0o755, 0, 0);
    writeFile(c, 'd/mine', 'm\n');
  }

  it('a directory the parent moves inside one the child deleted (rm -rf d, or made again) is a rename/delete conflict, kept as moved (review)', async () => {
    for (const again of [false, true]) {
      const { ov, cascade, p, c, g } = await generations({ 'd/sub/secret': 's\n', 'd/x': 'x\n' });
      deleteD(c, again);
      ov.commit('c', 'c1');
      cascade.fromCommit('c');
      p.rename('d/sub', 'd/sub2', 0);
      writeFile(p, 'd/sub2/added', 'a\n'); // new with the move: no conflict
      ov.commit('p', 'p1');
      // As git reports it: d/sub/secret deleted by the child, renamed to d/sub2/secret by the parent.
      expect(cascade.fromCommit('p').conflicted).toEqual([{ agent: 'c', paths: ['d/sub2/secret'] }]);
      expect(conflictsOf(ov, 'c')['d/sub2/secret']).toMatchObject({ kind: 'delete-modify', ours: null });
      expect(names(c, 'd')).toEqual(again ? ['mine', 'sub2'] : ['sub2']);
      expect(names(c, 'd/sub2')).toEqual(['added', 'secret']);
      expect(snapshot(ov.replay('c'), ov)).toEqual(snapshot(c.tree, ov));
      expect(cascade.resolve('c', 'd/sub2/secret', 'ours').rebased).toEqual(['g']);
      expect(names(g, 'd/sub2')).toEqual(['added']);
      for (const a of ['c', 'g']) expect(snapshot(ov.replay(a), ov)).toEqual(snapshot(ov.tree(a).tree, ov));
    }
  });

  it('a file both sides replace by a directory merges the two directories, as git does (review)', async () => {
    for (const again of [false, true]) {
      const { ov, cascade, p, c, g } = await generations({ 'd/f': 'f\n', 'd/x': 'x\n' });
      c.unlink('d/f');
      if (again) { c.unlink('d/x'); c.rmdir('d'); c.mkdir('d', 0o755, 0, 0); } // rm -rf d; mkdir d
      c.mkdir('d/f', 0o755, 0, 0);
      writeFile(c, 'd/f/a', 'a\n');
      ov.commit('c', 'c1');
      cascade.fromCommit('c');
      p.unlink('d/f'); p.mkdir('d/f', 0o755, 0, 0); writeFile(p, 'd/f/b', 'b\n');
      ov.commit('p', 'p1');
      expect(cascade.fromCommit('p').conflicted).toEqual([]);
      expect(names(c, 'd/f')).toEqual(['a', 'b']);
      expect(names(g, 'd/f')).toEqual(['a', 'b']);
      for (const a of ['c', 'g']) expect(snapshot(ov.replay(a), ov)).toEqual(snapshot(ov.tree(a).tree, ov));
      await land(ov, cascade, 'c', {});
      expect(names(p, 'd/f')).toEqual(['a', 'b']);
      expect(names(p, 'd')).toEqual(again ? ['f'] : ['f', 'x']);
    }
  });

  it('a directory the child deleted stays deleted when the parent only changes a mode in it; a later file unfolds it (review)', async () => {
    for (const again of [false, true]) {
      const { ov, cascade, p, c } = await generations({ 'd/sub/secret': 's\n', 'd/x': 'x\n' });
      deleteD(c, again);
      ov.commit('c', 'c1');
      cascade.fromCommit('c');
      p.chmod('d/sub', 0o700);
      ov.commit('p', 'p1');
      expect(cascade.fromCommit('p').conflicted).toEqual([]);
      expect(errnoOf(() => c.getattr('d/sub'))).toBe('ENOENT');
      expect(again ? names(c, 'd') : errnoOf(() => c.getattr('d'))).toEqual(again ? ['mine'] : 'ENOENT');
      writeFile(p, 'd/sub/new', 'n\n');
      ov.commit('p', 'p2');
      expect(cascade.fromCommit('p').conflicted).toEqual([]);
      expect(names(c, 'd/sub')).toEqual(['new']);
      expect(snapshot(ov.replay('c'), ov)).toEqual(snapshot(c.tree, ov));
    }
  });

  it('a commit settles a conflict without markers only when the agent changed the path', async () => {
    const { ov, cascade, p, c, g } = await tree();
    writeFile(c, 'added.bin', Buffer.from([0, 1]));
    writeFile(p, 'added.bin', Buffer.from([0, 2]));
    c.unlink('fought'); c.symlink('child', 'fought', 0, 0);
    p.unlink('fought'); p.symlink('parent', 'fought', 0, 0);
    ov.commit('p', 'p1');
    cascade.fromCommit('p');
    expect(Object.keys(conflictsOf(ov, 'c')).sort()).toEqual(['added.bin', 'fought']);
    // Committing without looking at them settles nothing: the cascade stays paused.
    writeFile(c, 'unrelated.txt', 'x\n');
    ov.commit('c', 'other work');
    expect(cascade.afterCommitOf('c').paused).toEqual(['c']);
    expect(Object.keys(conflictsOf(ov, 'c')).sort()).toEqual(['added.bin', 'fought']);
    // Writing the binary file and retargeting the link, then committing, settles both.
    writeFile(c, 'added.bin', Buffer.from([0, 3]));
    c.unlink('fought'); c.symlink('both', 'fought', 0, 0);
    ov.commit('c', 'merged by hand');
    expect(cascade.afterCommitOf('c').rebased).toEqual(['g']);
    expect(conflictsOf(ov, 'c')).toEqual({});
    expect(g.readlink('fought')).toBe('both');
    expect([...Buffer.from(readFile(g, 'added.bin'), 'latin1')]).toEqual([0, 3]);
  });

  it('delete vs modify both ways: the modified side stays in the tree until resolved', async () => {
    const { ov, cascade, p, c, g } = await tree();
    writeFile(c, 'gone.txt', edit(readFile(c, 'gone.txt'), 2, 'child 2')); // child modifies, parent deletes
    p.unlink('gone.txt');
    c.unlink('kept.txt'); // child deletes, parent modifies
    writeFile(p, 'kept.txt', edit(readFile(p, 'kept.txt'), 2, 'parent 2'));
    ov.commit('c', 'c1');
    cascade.fromCommit('c');
    ov.commit('p', 'p1');
    expect(cascade.fromCommit('p').conflicted).toEqual([{ agent: 'c', paths: expect.arrayContaining(['gone.txt', 'kept.txt']) }]);
    expect(conflictsOf(ov, 'c')['gone.txt']).toMatchObject({ kind: 'delete-modify', theirs: null });
    expect(conflictsOf(ov, 'c')['kept.txt']).toMatchObject({ kind: 'delete-modify', ours: null });
    expect(readFile(c, 'gone.txt')).toContain('child 2');
    expect(readFile(c, 'kept.txt')).toContain('parent 2');
    cascade.resolve('c', 'gone.txt', 'ours'); // keep the child's edit
    expect(cascade.resolve('c', 'kept.txt', 'ours').rebased).toEqual(['g']); // keep the child's deletion
    expect(readFile(g, 'gone.txt')).toContain('child 2');
    expect(() => readFile(g, 'kept.txt')).toThrow();
    expect(snapshot(ov.replay('g'), ov)).toEqual(snapshot(g.tree, ov));
  });
});

describe('what listeners of a child\'s tree see around a rebase', () => {
  async function deletedAndEditedByParent() {
    const { ov } = await openOverlay({ 'gone.txt': 'old gone\n', 'edited.txt': 'old edited\n', 'kept.txt': 'kept\n' });
    opened.push(ov);
    const cascade = new Cascade(ov);
    ov.createAgent('p', null);
    ov.createAgent('c', 'p');
    writeFile(ov.tree('c'), 'mine.txt', 'mine\n');
    ov.tree('p').unlink('gone.txt');
    writeFile(ov.tree('p'), 'edited.txt', 'new edited, longer\n');
    ov.commit('p', 'p1');
    return { ov, rebase: () => cascade.fromCommit('p') };
  }

  it('subscribers of AGENT_REBASED find the tree as it left it: what the parent deleted is gone, what it changed is new', async () => {
    const { ov, rebase } = await deletedAndEditedByParent();
    const c = ov.tree('c');
    const seen: string[] = [];
    ov.log.subscribe((ev) => {
      if (ev.agent !== 'c' || ev.type !== 'AGENT_REBASED') return;
      seen.push(errnoOf(() => c.getattr('gone.txt')) ?? 'exists', readFile(c, 'edited.txt'), readFile(c, 'mine.txt'));
    });
    expect(rebase().rebased).toEqual(['c']);
    expect(seen).toEqual(['ENOENT', 'new edited, longer\n', 'mine\n']);
  });

  it('the paths are announced before the change: a file opened then reads what it was, a new open the change', async () => {
    const { ov, rebase } = await deletedAndEditedByParent();
    const c = ov.tree('c');
    const held = new Map<string, number>();
    const announced: string[] = [];
    c.onBeforeChange((paths) => {
      announced.push(...paths);
      for (const p of paths) if (!held.has(p) && !errnoOf(() => c.getattr(p))) held.set(p, c.open(p, 0));
    });
    rebase();
    expect(announced).toEqual(expect.arrayContaining(['gone.txt', 'edited.txt']));
    expect(announced).not.toContain('kept.txt');
    const readHeld = (p: string) => {
      const buf = Buffer.alloc(100);
      return buf.subarray(0, c.read(held.get(p)!, buf, 100, 0)).toString();
    };
    expect([readHeld('gone.txt'), readHeld('edited.txt')]).toEqual(['old gone\n', 'old edited\n']);
    expect(errnoOf(() => c.getattr('gone.txt'))).toBe('ENOENT');
    expect(readFile(c, 'edited.txt')).toBe('new edited, longer\n');
    for (const fh of held.values()) c.release(fh);
    // Nothing the holders had is put back.
    expect(errnoOf(() => c.getattr('gone.txt'))).toBe('ENOENT');
    expect(readFile(c, 'edited.txt')).toBe('new edited, longer\n');
    expect([...c.layer.entriesList()].map(([p]) => p)).toEqual(['mine.txt']);
  });

  it('a cascade a crash cut short goes on at the start; one agent that cannot be rebased stays behind without stopping the others', async () => {
    const { ov, cascade } = await family(2);
    const big = text(lines(20_000)); // a blob kept as a file
    writeFile(ov.tree('c'), 'app.txt', edit(big, 1, 'child'));
    ov.commit('c', 'c1');
    writeFile(ov.tree('p'), 'app.txt', edit(big, 20_000, 'parent'));
    ov.commit('p', 'p1'); // no cascade: the crash came here
    // c's merge needs its own version, whose blob is gone (a lost file, a full disk: any rebase that throws).
    const own = ov.tree('c').layer.get('app.txt');
    const file = own?.kind === 'file' ? ov.blobs.fileOf(own.hash) : undefined;
    expect(file).toBeDefined();
    fs.rmSync(file!);
    const report = cascade.resumeInterrupted();
    expect(report.failed.map((f) => f.agent)).toEqual(['c']);
    expect(report.rebased).toContain('c1');
    expect(ov.agent('c1').base).toBe(ov.agent('p').head);
    expect(readFile(ov.tree('c1'), 'app.txt')).toBe(edit(big, 20_000, 'parent'));
    expect(ov.agent('c').base).not.toBe(ov.agent('p').head);
  });

  it('a directory deleted on both sides is gone without a conflict, and comes back if the parent makes it again', async () => {
    const { ov, cascade, p, c } = await generations({ 'd/sub/f': 'f\n', 'd/g': 'g\n', 'keep.txt': 'k\n' });
    for (const t of [p, c]) {
      t.unlink('d/sub/f');
      t.rmdir('d/sub');
      t.unlink('d/g');
      t.rmdir('d'); // rm -rf d on both sides
    }
    ov.commit('p', 'p1');
    const r = cascade.fromCommit('p');
    expect(r.conflicted).toEqual([]);
    expect(ov.agent('c').conflicts ?? {}).toEqual({});
    expect(errnoOf(() => c.getattr('d'))).toBe('ENOENT');
    expect(c.layer.get('d')).toBeUndefined();
    p.mkdir('d', 0o755, 0, 0);
    writeFile(p, 'd/new', 'new\n');
    ov.commit('p', 'p2');
    cascade.fromCommit('p');
    expect(readFile(c, 'd/new')).toBe('new\n');
    expect(snapshot(ov.replay('c'), ov)).toEqual(snapshot(c.tree, ov));
  });
});

describe('a root agent deleted a directory the workspace on disk later changes inside', () => {
  /** Root agent r over the workspace; `disk(paths)` tells the watcher, as the daemon's watcher of the workspace does, and rebases. */
  async function root(files: Record<string, string>) {
    const { ov, ws } = await openOverlay(files);
    opened.push(ov);
    const cascade = new Cascade(ov);
    ov.createAgent('r', null);
    let heard: (paths: readonly string[]) => void = () => {};
    const watcher = new WorkspaceWatcher(ov, cascade, pino({ level: 'silent' }), (fn) => {
      heard = fn;
      return () => {};
    });
    closers.push(() => watcher.close());
    const onDisk = async (edit: () => void, paths: string[]) => {
      await new Promise((r) => setTimeout(r, 20)); // after the agent's deletions, by the clock
      edit();
      heard(paths);
      watcher.flush();
    };
    return { ov, ws, cascade, r: ov.tree('r'), onDisk, at: (p: string) => path.join(ws, p) };
  }
  const closers: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const close of closers.splice(0)) await close();
  });
  const names = (t: { readdir(p: string): { name: string }[] }, d: string) => t.readdir(d).map((e) => e.name).filter((n) => !n.startsWith('.')).sort();

  it('rm -rf d: a file added in d on disk shows, one edited there is a delete-modify conflict; landing keeps what came since', async () => {
    const { ov, cascade, r, onDisk, at } = await root({ 'd/x': 'x\n', 'd/edited': 'e\n', 'd/sub/y': 'y\n', 'd/sub/z': 'z\n', 'keep': 'k\n' });
    for (const f of ['d/x', 'd/edited', 'd/sub/y', 'd/sub/z']) r.unlink(f);
    r.rmdir('d/sub');
    r.rmdir('d'); // rm -rf d
    ov.commit('r', 'rm -rf d');
    ov.createAgent('c', 'r');
    await onDisk(() => {
      fs.writeFileSync(at('d/new'), 'new\n');
      fs.writeFileSync(at('d/sub/new2'), 'new2\n');
      fs.mkdirSync(at('d/added/deep'), { recursive: true });
      fs.writeFileSync(at('d/added/deep/f'), 'f\n');
      fs.appendFileSync(at('d/edited'), 'edited on disk\n');
    }, ['d/new', 'd/sub/new2', 'd/added', 'd/added/deep', 'd/added/deep/f', 'd/edited']);
    // As git sees it: the agent deleted the files it saw, not those the workspace added since.
    expect(names(r, 'd')).toEqual(['added', 'edited', 'new', 'sub']);
    expect(names(r, 'd/sub')).toEqual(['new2']);
    expect(readFile(r, 'd/new')).toBe('new\n');
    expect(readFile(r, 'd/added/deep/f')).toBe('f\n');
    expect(ov.agent('r').conflicts?.['d/edited']).toMatchObject({ kind: 'delete-modify', ours: null, from: null, to: null });
    expect(readFile(r, 'd/edited')).toBe('e\nedited on disk\n'); // the modified side stays until resolved
    expect(cascade.resolve('r', 'd/edited', 'ours').rebased).toEqual(['c']); // keep the deletion
    expect(names(r, 'd')).toEqual(['added', 'new', 'sub']);
    expect(names(ov.tree('c'), 'd/sub')).toEqual(['new2']);
    expect(snapshot(ov.replay('r'), ov)).toEqual(snapshot(r.tree, ov));
    await land(ov, cascade, 'r', {});
    expect(fs.readdirSync(at('d')).sort()).toEqual(['added', 'new', 'sub']);
    expect(fs.readdirSync(at('d/sub'))).toEqual(['new2']);
    expect(fs.readFileSync(at('keep'), 'utf8')).toBe('k\n');
  });

  it('rm -rf d; mkdir d: the same, and the files the agent made in d stay; a directory left hidden unfolds at a later change', async () => {
    const { ov, cascade, r, onDisk, at } = await root({ 'd/x': 'x\n', 'd/sub/y': 'y\n' });
    r.unlink('d/x');
    r.unlink('d/sub/y');
    r.rmdir('d/sub');
    r.rmdir('d');
    r.mkdir('d', 0o755, 0, 0); // opaque: hides d/x and d/sub below
    writeFile(r, 'd/mine', 'mine\n');
    ov.commit('r', 'd made again');
    await onDisk(() => fs.writeFileSync(at('d/new'), 'new\n'), ['d/new']);
    expect(names(r, 'd')).toEqual(['mine', 'new']);
    expect(ov.agent('r').conflicts ?? {}).toEqual({});
    // d/sub, untouched then, is hidden by a whiteout of its own now: a file added there later unfolds it in turn.
    await onDisk(() => fs.writeFileSync(at('d/sub/new2'), 'new2\n'), ['d/sub/new2']);
    expect(names(r, 'd')).toEqual(['mine', 'new', 'sub']);
    expect(names(r, 'd/sub')).toEqual(['new2']);
    expect(snapshot(ov.replay('r'), ov)).toEqual(snapshot(r.tree, ov));
    await land(ov, cascade, 'r', {});
    expect(fs.readdirSync(at('d')).sort()).toEqual(['mine', 'new', 'sub']);
    expect(fs.readdirSync(at('d/sub'))).toEqual(['new2']);
  });

  it('a change on disk the agent\'s deletion does not cover leaves it as it was', async () => {
    const { ov, r, onDisk, at } = await root({ 'd/x': 'x\n', 'e/y': 'y\n' });
    r.unlink('d/x');
    r.rmdir('d');
    ov.commit('r', 'rm -rf d');
    await onDisk(() => fs.writeFileSync(at('e/new'), 'new\n'), ['e/new']);
    expect(r.layer.get('d')).toEqual({ kind: 'whiteout' });
    expect(names(r, '')).toEqual(['e']);
    expect(names(r, 'e')).toEqual(['new', 'y']);
  });
});
