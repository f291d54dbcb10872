import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Cascade } from '../../src/cascade/cascade.js';
import { land, LandConflictError } from '../../src/land/land.js';
import { recoverLanding } from '../../src/land/workspace-landing.js';
import { Overlay } from '../../src/overlay/overlay.js';
import { changedPaths } from '../../src/overlay/tree-diff.js';
import { diskListing, openOverlay, readFile, removeTempDirs, snapshot, writeFile } from '../helpers/core.js';

/** The directories whose file system `sync --file-system` flushed, with the files each held as it started. */
const fsSyncs = vi.hoisted(() => [] as { dir: string; files: string[] }[]);
vi.mock('node:child_process', async (importOriginal) => {
  const cp = await importOriginal<typeof import('node:child_process')>();
  const execFile = (file: string, args: string[], cb: (...r: unknown[]) => void) => {
    const files = file === 'sync' ? cp.execFileSync('ls', ['-A', args[1]!], { encoding: 'utf8' }).split('\n').filter(Boolean) : [];
    return cp.execFile(file, args, (...r: unknown[]) => {
      if (file === 'sync' && r[0] === null) fsSyncs.push({ dir: args[1]!, files });
      cb(...r);
    });
  };
  return { ...cp, default: { ...cp, execFile }, execFile };
});

const opened: Overlay[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  for (const ov of opened.splice(0)) await ov.close();
  removeTempDirs();
});

const text = (n: number, edits: Record<number, string> = {}) =>
  `${Array.from({ length: n }, (_, i) => edits[i + 1] ?? `line ${i + 1}`).join('\n')}\n`;

async function setup() {
  const { ov, ws } = await openOverlay({ 'app.txt': text(30), 'keep.txt': 'keep\n', 'gone.txt': 'gone\n', 'dir/a.txt': 'a\n' });
  opened.push(ov);
  return { ov, ws, cascade: new Cascade(ov) };
}

describe('land into the workspace (core)', () => {
  it('merges each path with the workspace as it is now and leaves the agent with nothing of its own', async () => {
    const { ov, ws, cascade } = await setup();
    ov.createAgent('a', null);
    const t = ov.tree('a');
    writeFile(t, 'app.txt', text(30, { 5: 'agent 5' }));
    t.mkdir('new', 0o755, 0, 0);
    t.mkdir('new/deep', 0o755, 0, 0);
    writeFile(t, 'new/deep/file.txt', 'new\n'.repeat(3), 0o755);
    t.unlink('gone.txt');
    t.rename('dir', 'moved', 0);
    t.symlink('keep.txt', 'link', 0, 0);
    ov.commit('a', 'work');
    writeFile(t, 'later.txt', 'not committed\n');
    fs.writeFileSync(path.join(ws, 'app.txt'), text(30, { 25: 'human 25' }));
    const r = await land(ov, cascade, 'a', {});
    expect(r.uncommitted).toBe(1);
    expect(fs.readFileSync(path.join(ws, 'app.txt'), 'utf8')).toBe(text(30, { 5: 'agent 5', 25: 'human 25' }));
    expect(fs.statSync(path.join(ws, 'new/deep/file.txt')).mode & 0o777).toBe(0o755);
    expect(fs.existsSync(path.join(ws, 'gone.txt'))).toBe(false);
    expect(fs.existsSync(path.join(ws, 'dir'))).toBe(false);
    expect(fs.readFileSync(path.join(ws, 'moved/a.txt'), 'utf8')).toBe('a\n');
    expect(fs.readlinkSync(path.join(ws, 'link'))).toBe('keep.txt');
    expect(fs.existsSync(path.join(ws, 'later.txt'))).toBe(false);
    // Based on the landed workspace: its head has nothing of its own, its working tree only the uncommitted file.
    const a = ov.agent('a');
    expect(changedPaths(ov.commitView(null), ov.commitView(a.head), ov.blobs)).toEqual([]);
    expect(changedPaths(ov.commitView(null), t.tree, ov.blobs).map((c) => c.path)).toEqual(['later.txt']);
    expect(readFile(t, 'app.txt')).toBe(text(30, { 5: 'agent 5', 25: 'human 25' }));
    expect(snapshot(ov.replay('a'), ov)).toEqual(snapshot(t.tree, ov));
    expect([...ov.log.byAgent('a')].at(-1)).toMatchObject({ type: 'AGENT_LANDED', into: null, commit: r.commit });
  });

  it('a file that became a directory, and a directory that became a file', async () => {
    const { ov, ws, cascade } = await setup();
    ov.createAgent('a', null);
    const t = ov.tree('a');
    t.unlink('keep.txt');
    t.mkdir('keep.txt', 0o750, 0, 0);
    writeFile(t, 'keep.txt/inner.txt', 'inner\n');
    t.unlink('dir/a.txt');
    t.rmdir('dir');
    writeFile(t, 'dir', 'now a file\n');
    ov.commit('a', 'swap');
    await land(ov, cascade, 'a', {});
    expect(fs.readFileSync(path.join(ws, 'keep.txt/inner.txt'), 'utf8')).toBe('inner\n');
    expect(fs.statSync(path.join(ws, 'keep.txt')).mode & 0o777).toBe(0o750);
    expect(fs.readFileSync(path.join(ws, 'dir'), 'utf8')).toBe('now a file\n');
    expect(snapshot(ov.tree('a').tree, ov)).toEqual(snapshot(ov.commitView(null), ov));
  });

  it('refuses every path when one conflicts, writing nothing', async () => {
    const { ov, ws, cascade } = await setup();
    ov.createAgent('a', null);
    writeFile(ov.tree('a'), 'app.txt', text(30, { 5: 'agent 5' }));
    writeFile(ov.tree('a'), 'fine.txt', 'fine\n');
    ov.commit('a', 'work');
    fs.writeFileSync(path.join(ws, 'app.txt'), text(30, { 5: 'human 5' }));
    const before = diskListing(ws);
    const err = await land(ov, cascade, 'a', {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LandConflictError);
    expect((err as LandConflictError).conflicts).toEqual([expect.objectContaining({ path: 'app.txt', kind: 'content' })]);
    expect((err as Error).message).toMatch(/a +\| agent 5\n.*\n.*the workspace +\| human 5/);
    expect(diskListing(ws)).toEqual(before);
  });

  it('refuses to delete what the workspace changed or added after the agent deleted it (a root agent has no copy to merge with)', async () => {
    const { ov, ws, cascade } = await setup();
    ov.createAgent('a', null);
    const t = ov.tree('a');
    t.unlink('gone.txt');
    t.unlink('dir/a.txt');
    t.rmdir('dir'); // rm -rf dir
    ov.commit('a', 'deletions');
    await new Promise((r) => setTimeout(r, 20)); // the workspace changes after the deletions, by the clock
    fs.appendFileSync(path.join(ws, 'gone.txt'), 'edited on disk\n');
    fs.writeFileSync(path.join(ws, 'dir/new.txt'), 'added on disk\n');
    const before = diskListing(ws);
    const err = await land(ov, cascade, 'a', {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LandConflictError);
    expect((err as LandConflictError).conflicts.map((c) => [c.path, c.kind]).sort()).toEqual([['dir/new.txt', 'delete-modify'], ['gone.txt', 'delete-modify']]);
    expect(diskListing(ws)).toEqual(before);
    // What the workspace did not touch since is deleted as before.
    fs.rmSync(path.join(ws, 'dir/new.txt'));
    fs.writeFileSync(path.join(ws, 'gone.txt'), 'gone\n');
    await new Promise((r) => setTimeout(r, 20));
    ov.createAgent('b', null);
    ov.tree('b').unlink('gone.txt');
    ov.commit('b', 'delete again');
    await land(ov, cascade, 'b', {});
    expect(fs.existsSync(path.join(ws, 'gone.txt'))).toBe(false);
  });

  it('the same under a directory the agent removed and made again (rm -rf d; mkdir d) or replaced with a file', async () => {
    const { ov, ws, cascade } = await setup();
    ov.createAgent('a', null);
    const t = ov.tree('a');
    t.unlink('dir/a.txt');
    t.rmdir('dir');
    t.mkdir('dir', 0o755, 0, 0);
    writeFile(t, 'dir/mine.txt', 'mine\n');
    ov.commit('a', 'dir made again');
    ov.createAgent('b', null);
    ov.tree('b').unlink('dir/a.txt');
    ov.tree('b').rmdir('dir');
    writeFile(ov.tree('b'), 'dir', 'a file now\n');
    ov.commit('b', 'dir a file');
    await new Promise((r) => setTimeout(r, 20));
    fs.appendFileSync(path.join(ws, 'dir/a.txt'), 'edited on disk\n');
    const before = diskListing(ws);
    for (const agent of ['a', 'b']) {
      const err = await land(ov, cascade, agent, {}).catch((e: unknown) => e);
      expect(err, agent).toBeInstanceOf(LandConflictError);
      expect((err as LandConflictError).conflicts.map((c) => [c.path, c.kind]), agent).toEqual([['dir/a.txt', 'delete-modify']]);
      expect(diskListing(ws), agent).toEqual(before);
    }
  });

  it('plans again when the agent\'s head moved once while the landing was prepared, and lands what it holds then', async () => {
    const { ov, ws, cascade } = await setup();
    ov.createAgent('a', null);
    for (let i = 0; i < 150; i++) writeFile(ov.tree('a'), `f${i}.txt`, `${i}\n`);
    ov.commit('a', 'many');
    let moved = false;
    await land(ov, cascade, 'a', {
      onProgress: () => {
        if (moved) return;
        moved = true;
        writeFile(ov.tree('a'), 'late.txt', 'committed meanwhile\n');
        ov.commit('a', 'meanwhile');
      },
    });
    expect(fs.readFileSync(path.join(ws, 'late.txt'), 'utf8')).toBe('committed meanwhile\n');
    expect(fs.readFileSync(path.join(ws, 'f149.txt'), 'utf8')).toBe('149\n');
  });

  it('refuses, writing nothing, when the agent keeps committing while the landing is prepared', async () => {
    const { ov, ws, cascade } = await setup();
    ov.createAgent('a', null);
    for (let i = 0; i < 150; i++) writeFile(ov.tree('a'), `f${i}.txt`, `${i}\n`);
    ov.commit('a', 'many');
    const before = diskListing(ws);
    const err = await land(ov, cascade, 'a', {
      onProgress: () => {
        writeFile(ov.tree('a'), 'late.txt', 'committed meanwhile\n');
        ov.commit('a', 'meanwhile');
      },
    }).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/committed or was rebased while its landing was being prepared; nothing was written/);
    expect(diskListing(ws)).toEqual(before);
    expect(readFile(ov.tree('a'), 'late.txt')).toBe('committed meanwhile\n');
    expect(snapshot(ov.commitView(ov.agent('a').head), ov)['late.txt']).toContain('committed meanwhile');
    // The next landing takes both commits.
    await land(ov, cascade, 'a', {});
    expect(fs.readFileSync(path.join(ws, 'late.txt'), 'utf8')).toBe('committed meanwhile\n');
  });

  it('nothing committed: nothing landed, nothing recorded', async () => {
    const { ov, cascade } = await setup();
    ov.createAgent('a', null);
    writeFile(ov.tree('a'), 'x.txt', 'x\n');
    const head = ov.log.head;
    const r = await land(ov, cascade, 'a', {});
    expect(r.paths).toEqual([]);
    expect(r.uncommitted).toBe(1);
    expect(ov.log.head).toBe(head);
  });

  it('every temporary file and its directory reach the disk before the commit point, the renames before the journal goes', async () => {
    const { ov, ws, cascade } = await setup();
    ov.createAgent('a', null);
    const t = ov.tree('a');
    writeFile(t, 'app.txt', text(30, { 5: 'agent 5' }));
    t.mkdir('new', 0o755, 0, 0);
    writeFile(t, 'new/big.bin', 'x'.repeat(100_000)); // a blob file of its own, copied
    t.unlink('dir/a.txt');
    t.symlink('keep.txt', 'link', 0, 0);
    ov.commit('a', 'work');
    fsSyncs.length = 0;
    const synced = new Set<string>();
    const fsync = fs.fsyncSync.bind(fs);
    vi.spyOn(fs, 'fsyncSync').mockImplementation((fd) => {
      synced.add(fs.readlinkSync(`/proc/self/fd/${fd}`));
      fsync(fd);
    });
    const meta = ov.store.dbs.meta;
    let unsyncedAtCommitPoint: string[] | undefined;
    const put = meta.putSync.bind(meta);
    vi.spyOn(meta, 'putSync').mockImplementation((key, value) => {
      const j = value as { phase?: string; tmpDir: string };
      if (key === 'landing' && j.phase === 'commit') {
        // Flushed by one syncfs of the workspace's file system, started once they were all written.
        const tmp = path.join(ws, j.tmpDir);
        const flushed = new Set(fsSyncs.filter((x) => x.dir === tmp).flatMap((x) => x.files));
        unsyncedAtCommitPoint = fs.readdirSync(tmp).filter((f) => !flushed.has(f));
        expect(fs.readdirSync(tmp)).toHaveLength(3); // app.txt, new/big.bin, link
      }
      return put(key, value);
    });
    let unsyncedAtEnd: string[] | undefined;
    const remove = meta.removeSync.bind(meta);
    vi.spyOn(meta, 'removeSync').mockImplementation((key) => {
      if (key === 'landing') unsyncedAtEnd = [ws, path.join(ws, 'new'), path.join(ws, 'dir')].filter((f) => !synced.has(f));
      return remove(key);
    });
    await land(ov, cascade, 'a', {});
    expect(unsyncedAtCommitPoint).toEqual([]);
    expect(unsyncedAtEnd).toEqual([]);
  });

  it('the settle and the end of the journal are one transaction: a crash between them does not settle twice', async () => {
    const { ov, ws, cascade } = await setup();
    ov.createAgent('a', null);
    writeFile(ov.tree('a'), 'app.txt', text(30, { 5: 'agent 5' }));
    ov.commit('a', 'work');
    const meta = ov.store.dbs.meta;
    const remove = meta.removeSync.bind(meta);
    // The daemon dies as the journal is removed.
    vi.spyOn(meta, 'removeSync').mockImplementationOnce(() => {
      throw new Error('killed');
    }).mockImplementation((key) => remove(key));
    const from = ov.log.head + 1;
    await expect(land(ov, cascade, 'a', {})).rejects.toThrow('killed');
    // The next start, from what the store holds.
    await opened.pop()!.close();
    const again = await Overlay.open({ workspace: ws });
    opened.push(again);
    expect(recoverLanding(again, new Cascade(again))).toEqual({ agent: 'a', outcome: 'finished' });
    const types = [...again.log.byAgent('a', Infinity, from)].map((e) => e.type);
    expect(types).toEqual(['AGENT_REBASED', 'AGENT_LANDED']);
    expect(fs.readFileSync(path.join(ws, 'app.txt'), 'utf8')).toBe(text(30, { 5: 'agent 5' }));
    expect(snapshot(again.tree('a').tree, again)).toEqual(snapshot(again.commitView(null), again));
  });

  it('a journal left in `commit` is finished at the next start; one in `prepare` rolled back', async () => {
    const { ov, ws, cascade } = await setup();
    ov.createAgent('a', null);
    writeFile(ov.tree('a'), 'x.txt', 'x\n');
    ov.commit('a', 'work');
    const tmpDir = '.cowfs-landing-test';
    fs.mkdirSync(path.join(ws, tmpDir));
    fs.writeFileSync(path.join(ws, tmpDir, '0'), 'x\n');
    const journal = { agent: 'a', commit: ov.agent('a').head, tmpDir, paths: ['x.txt', 'gone.txt'], deletes: ['gone.txt'], rmdirs: [], mkdirs: [], writes: [{ path: 'x.txt', tmp: '0' }] };
    ov.store.dbs.meta.putSync('landing', { ...journal, phase: 'prepare' });
    expect(recoverLanding(ov, cascade)).toEqual({ agent: 'a', outcome: 'rolled back' });
    expect(fs.existsSync(path.join(ws, tmpDir))).toBe(false);
    expect(fs.existsSync(path.join(ws, 'gone.txt'))).toBe(true);
    fs.mkdirSync(path.join(ws, tmpDir));
    fs.writeFileSync(path.join(ws, tmpDir, '0'), 'x\n');
    ov.store.dbs.meta.putSync('landing', { ...journal, phase: 'commit' });
    expect(recoverLanding(ov, cascade)).toEqual({ agent: 'a', outcome: 'finished' });
    expect(fs.readFileSync(path.join(ws, 'x.txt'), 'utf8')).toBe('x\n');
    expect(fs.existsSync(path.join(ws, 'gone.txt'))).toBe(false);
    expect(fs.existsSync(path.join(ws, tmpDir))).toBe(false);
    expect([...ov.log.byAgent('a')].at(-1)).toMatchObject({ type: 'AGENT_LANDED', recovered: true });
    expect(recoverLanding(ov, cascade)).toBeUndefined();
  });
});

describe('land into the parent agent (core)', () => {
  it('a commit there; the agent and its siblings are rebased onto it', async () => {
    const { ov, cascade } = await setup();
    ov.createAgent('p', null);
    ov.createAgent('c', 'p');
    ov.createAgent('s', 'p');
    writeFile(ov.tree('c'), 'app.txt', text(30, { 3: 'child 3' }));
    ov.commit('c', 'child');
    writeFile(ov.tree('s'), 'app.txt', text(30, { 20: 'sibling 20' }));
    writeFile(ov.tree('p'), 'wip.txt', 'uncommitted\n');
    const r = await land(ov, cascade, 'c', { into: 'p' });
    expect(r.cascade?.conflicted).toEqual([]);
    expect(readFile(ov.tree('p'), 'app.txt')).toBe(text(30, { 3: 'child 3' }));
    expect(readFile(ov.tree('s'), 'app.txt')).toBe(text(30, { 3: 'child 3', 20: 'sibling 20' }));
    expect(ov.registry.commitLayer(ov.agent('p').head).get('wip.txt')).toBeUndefined();
    expect(ov.agent('c').base).toBe(ov.agent('p').head);
    expect(ov.tree('c').layer.size).toBe(0);
    expect(snapshot(ov.replay('p'), ov)).toEqual(snapshot(ov.tree('p').tree, ov));
    expect(snapshot(ov.replay('c'), ov)).toEqual(snapshot(ov.tree('c').tree, ov));
  });

  it('the parent gets exactly the child\'s tree when it had not moved: swaps, renames, symlinks, modes', async () => {
    const { ov, cascade } = await setup();
    ov.createAgent('p', null);
    ov.createAgent('c', 'p');
    const t = ov.tree('c');
    t.unlink('keep.txt');
    t.mkdir('keep.txt', 0o750, 0, 0);
    writeFile(t, 'keep.txt/inner.txt', 'inner\n');
    t.rename('dir', 'moved', 0);
    t.unlink('gone.txt');
    writeFile(t, 'gone.txt', 'back, executable\n', 0o755);
    t.symlink('app.txt', 'link', 0, 0);
    ov.commit('c', 'swap');
    const want = snapshot(ov.commitView(ov.agent('c').head), ov);
    await land(ov, cascade, 'c', {});
    expect(snapshot(ov.tree('p').tree, ov)).toEqual(want);
    expect(snapshot(ov.commitView(ov.agent('p').head), ov)).toEqual(want);
    expect(snapshot(ov.tree('c').tree, ov)).toEqual(want);
    expect(snapshot(ov.replay('p'), ov)).toEqual(want);
  });

  it('refuses while the parent has uncommitted changes at a landed path', async () => {
    const { ov, cascade } = await setup();
    ov.createAgent('p', null);
    ov.createAgent('c', 'p');
    writeFile(ov.tree('c'), 'keep.txt', 'child\n');
    ov.commit('c', 'child');
    writeFile(ov.tree('p'), 'keep.txt', 'parent, uncommitted\n');
    await expect(land(ov, cascade, 'c', {})).rejects.toThrow(/p has uncommitted changes at keep.txt/);
    await expect(land(ov, cascade, 'c', { into: 'x' })).rejects.toThrow(/can only land into its parent, p/);
    await expect(land(ov, cascade, 'c', { workspace: true })).rejects.toThrow(/land it into p/);
  });
});
