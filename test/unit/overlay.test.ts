import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { O_RDWR, O_WRONLY, RENAME_NOREPLACE } from '../../src/overlay/contract.js';
import { Overlay } from '../../src/overlay/overlay.js';
import type { DirtyRecord } from '../../src/overlay/agent-tree.js';
import { diskListing, openOverlay, readFile, removeTempDirs, snapshot, tempDir, writeFile } from '../helpers/core.js';
import { errnoOf } from '../helpers/core.js';

const opened: Overlay[] = [];
afterEach(async () => {
  for (const ov of opened.splice(0)) await ov.close();
  removeTempDirs();
});

async function setup(files: Record<string, string>) {
  const r = await openOverlay(files);
  opened.push(r.ov);
  return r;
}


describe('agents', () => {
  it('validates names, parents, duplicates', async () => {
    const { ov } = await setup({});
    expect(() => ov.createAgent('Bad Name', null)).toThrow(/invalid agent name/);
    expect(() => ov.createAgent('-x', null)).toThrow(/invalid agent name/);
    expect(() => ov.createAgent('a'.repeat(65), null)).toThrow(/invalid agent name/);
    expect(() => ov.createAgent('kid', 'nobody')).toThrow(/no agent named "nobody"/);
    ov.createAgent('a', null);
    expect(() => ov.createAgent('a', null)).toThrow(/already exists/);
    expect(() => ov.createAgent('b', 'b')).toThrow(/own parent/);
    ov.createAgent('a.b_c-1', 'a');
    expect(ov.agents().map((a) => a.name).sort()).toEqual(['a', 'a.b_c-1']);
    expect(() => ov.removeAgent('a')).toThrow(/has children/);
    expect(ov.removeAgent('a', true).sort()).toEqual(['a', 'a.b_c-1']);
    expect(ov.agents()).toEqual([]);
  });

  it('a name reused after a removal starts empty: nothing of the old agent shows, live or replayed', async () => {
    const { ov, ws } = await setup({ 'f': 'base' });
    ov.createAgent('a', null);
    writeFile(ov.tree('a'), 'f', 'old life');
    writeFile(ov.tree('a'), 'only-old', 'x');
    ov.removeAgent('a');
    ov.createAgent('a', null);
    expect(readFile(ov.tree('a'), 'f')).toBe('base');
    expect(() => ov.tree('a').getattr('only-old')).toThrow();
    expect(snapshot(ov.replay('a'), ov)).toEqual(snapshot(ov.tree('a').tree, ov));
    await ov.close();
    opened.pop();
    const again = await Overlay.open({ workspace: ws });
    opened.push(again);
    expect(() => again.tree('a').getattr('only-old')).toThrow();
  });
});

describe('copy-on-write tree', () => {
  it('reads the workspace, writes privately, never touches the workspace', async () => {
    const { ov, ws } = await setup({ 'src/a.ts': 'a1', 'src/b.ts': 'b1', 'README.md': 'hi', 'link': '->src/a.ts' });
    const before = diskListing(ws);
    ov.createAgent('one', null);
    ov.createAgent('two', null);
    const one = ov.tree('one');
    const two = ov.tree('two');
    expect(readFile(one, 'src/a.ts')).toBe('a1');
    expect(one.readlink('link')).toBe('src/a.ts');
    writeFile(one, 'src/a.ts', 'changed');
    writeFile(one, 'new.txt', 'new');
    one.unlink('README.md');
    expect(readFile(one, 'src/a.ts')).toBe('changed');
    expect(readFile(two, 'src/a.ts')).toBe('a1');
    expect(errnoOf(() => one.getattr('README.md'))).toBe('ENOENT');
    expect(readFile(two, 'README.md')).toBe('hi');
    expect(one.readdir('').map((d) => d.name).sort()).toEqual(['link', 'new.txt', 'src']);
    expect(two.readdir('').map((d) => d.name).sort()).toEqual(['README.md', 'link', 'src']);
    expect(diskListing(ws)).toEqual(before);
  });

  it('partial writes copy up the inherited content first and keep the merge base', async () => {
    const { ov } = await setup({ 'f.txt': 'hello world' });
    ov.createAgent('a', null);
    const t = ov.tree('a');
    const fh = t.open('f.txt', O_RDWR);
    t.write(fh, Buffer.from('HELLO'), 5, 0);
    expect(t.fgetattr(fh).size).toBe(11);
    t.release(fh);
    expect(readFile(t, 'f.txt')).toBe('HELLO world');
    const e = t.layer.get('f.txt');
    expect(e?.kind === 'file' && ov.blobs.get(e.baseHash!).toString()).toBe('hello world');
  });

  it('hides the state directory and refuses escaping paths', async () => {
    const { ov } = await setup({ 'x': '1' });
    ov.createAgent('a', null);
    const t = ov.tree('a');
    expect(t.readdir('').map((d) => d.name)).toEqual(['x']);
    expect(errnoOf(() => t.getattr('.cowfs'))).toBe('ENOENT');
    for (const bad of ['../etc/passwd', '/etc/passwd', 'a/../../x', 'x\0y', 'a//b', './x']) {
      expect(errnoOf(() => t.getattr(bad))).toBe('EINVAL');
    }
  });

  it('unlink, rmdir, mkdir over deleted dirs (opaque), symlinks, chmod, truncate', async () => {
    const { ov } = await setup({ 'd/x': 'x', 'd/y': 'y', 'e/': '', 'run.sh': '#!/bin/sh\necho hi\n' });
    ov.createAgent('a', null);
    const t = ov.tree('a');
    expect(errnoOf(() => t.rmdir('d'))).toBe('ENOTEMPTY');
    t.unlink('d/x');
    t.unlink('d/y');
    t.rmdir('d');
    expect(errnoOf(() => t.getattr('d'))).toBe('ENOENT');
    t.mkdir('d', 0o755, 0, 0);
    expect(t.readdir('d')).toEqual([]);
    expect(errnoOf(() => t.mkdir('d', 0o755, 0, 0))).toBe('EEXIST');
    expect(errnoOf(() => t.mkdir('nope/d', 0o755, 0, 0))).toBe('ENOENT');
    expect(errnoOf(() => t.rmdir('run.sh'))).toBe('ENOTDIR');
    t.rmdir('e');
    t.symlink('run.sh', 'sl', 0, 0);
    expect(t.readlink('sl')).toBe('run.sh');
    t.chmod('run.sh', 0o755);
    expect(t.getattr('run.sh').mode & 0o777).toBe(0o755);
    expect(readFile(t, 'run.sh')).toContain('echo hi');
    t.truncate('run.sh', 4);
    expect(readFile(t, 'run.sh')).toBe('#!/b');
    t.utimens('run.sh', 0, 1_000_000);
    expect(t.getattr('run.sh').mtimeMs).toBe(1_000_000);
  });

  it('renames files and whole inherited directories without copying', async () => {
    const { ov, ws } = await setup({ 'pkg/lib/a.js': 'A', 'pkg/lib/b.js': 'B', 'pkg/index.js': 'I', 'other': 'O' });
    const before = diskListing(ws);
    ov.createAgent('a', null);
    const t = ov.tree('a');
    t.rename('pkg', 'moved', 0);
    expect(errnoOf(() => t.getattr('pkg'))).toBe('ENOENT');
    expect(readFile(t, 'moved/lib/a.js')).toBe('A');
    expect(t.readdir('moved').map((d) => d.name).sort()).toEqual(['index.js', 'lib']);
    // No file was copied up: only the directory entry, a redirect, and a whiteout.
    expect([...t.layer.entriesList()].map(([p, e]) => `${p}:${e.kind}`).sort()).toEqual(['moved:dir', 'pkg:whiteout']);
    writeFile(t, 'moved/lib/a.js', 'A2');
    t.rename('moved/lib', 'lib2', 0);
    expect(readFile(t, 'lib2/a.js')).toBe('A2');
    expect(readFile(t, 'lib2/b.js')).toBe('B');
    t.unlink('lib2/b.js');
    expect(t.readdir('lib2').map((d) => d.name)).toEqual(['a.js']);
    expect(errnoOf(() => t.rename('other', 'lib2', 0))).toBe('EISDIR');
    expect(errnoOf(() => t.rename('lib2', 'other', 0))).toBe('ENOTDIR');
    expect(errnoOf(() => t.rename('lib2', 'lib2/x', 0))).toBe('EINVAL');
    writeFile(t, 'tmp', 'T');
    expect(errnoOf(() => t.rename('tmp', 'other', RENAME_NOREPLACE))).toBe('EEXIST');
    t.rename('tmp', 'other', 0);
    expect(readFile(t, 'other')).toBe('T');
    // Moving a directory back where it came from.
    t.rename('lib2', 'moved/lib', 0);
    t.rename('moved', 'pkg', 0);
    expect(snapshot(t.tree, ov)).toMatchObject({ 'pkg/lib/a.js': 'file 644 A2', 'pkg/index.js': 'file 644 I' });
    expect(snapshot(t.tree, ov)['pkg/lib/b.js']).toBeUndefined();
    expect(diskListing(ws)).toEqual(before);
  });

  it('open files survive rename and unlink', async () => {
    const { ov } = await setup({});
    ov.createAgent('a', null);
    const t = ov.tree('a');
    const fh = t.create('f', 0o644, O_WRONLY, 0, 0);
    t.write(fh, Buffer.from('abc'), 3, 0);
    t.rename('f', 'g', 0);
    t.write(fh, Buffer.from('def'), 3, 3);
    expect(t.fgetattr(fh).size).toBe(6);
    t.release(fh);
    expect(readFile(t, 'g')).toBe('abcdef');
    const fh2 = t.open('g', O_RDWR);
    t.unlink('g');
    t.write(fh2, Buffer.from('X'), 1, 0);
    const buf = Buffer.alloc(6);
    expect(t.read(fh2, buf, 6, 0)).toBe(6);
    expect(buf.toString()).toBe('Xbcdef');
    expect(t.fgetattr(fh2).nlink).toBe(0);
    t.release(fh2);
    expect(errnoOf(() => t.getattr('g'))).toBe('ENOENT');
  });
});

describe('commits and children', () => {
  it('children see the parent head, never its uncommitted writes', async () => {
    const { ov } = await setup({ 'f': 'base' });
    ov.createAgent('p', null);
    const p = ov.tree('p');
    writeFile(p, 'f', 'v1');
    writeFile(p, 'g', 'g1');
    ov.commit('p', 'first');
    writeFile(p, 'f', 'v2 uncommitted');
    ov.createAgent('c', 'p');
    const c = ov.tree('c');
    expect(readFile(c, 'f')).toBe('v1');
    expect(readFile(c, 'g')).toBe('g1');
    ov.createAgent('gc', 'c');
    expect(readFile(ov.tree('gc'), 'f')).toBe('v1');
    const commitEv = [...ov.log.byAgent('p')].find((e) => e.type === 'AGENT_COMMIT_CREATED');
    expect(commitEv && 'ops' in commitEv && commitEv.ops.map((o) => o.type)).toEqual(['put', 'put']);
  });

  it('survives reopening the store: layers, commits, agents, events', async () => {
    const { ov, ws } = await setup({ 'f': 'base' });
    const state = ov.stateDir;
    ov.createAgent('p', null);
    writeFile(ov.tree('p'), 'f', 'v1');
    ov.commit('p', 'c1');
    ov.createAgent('c', 'p');
    writeFile(ov.tree('c'), 'own', 'mine');
    const before = snapshot(ov.tree('c').tree, ov);
    const seq = ov.log.head;
    await ov.close();
    opened.pop();
    const again = await Overlay.open({ workspace: ws, stateDir: state });
    opened.push(again);
    expect(snapshot(again.tree('c').tree, again)).toEqual(before);
    expect(again.log.head).toBe(seq);
    again.createAgent('later', null);
    expect(again.log.head).toBe(seq + 1);
  });

  it('recovers files that were being written when the daemon died', async () => {
    const { ov, ws } = await setup({});
    const state = ov.stateDir;
    ov.createAgent('a', null);
    const t = ov.tree('a');
    const fh = t.create('unclosed', 0o600, O_WRONLY, 0, 0);
    t.write(fh, Buffer.from('written before the crash'), 24, 0);
    // fsync makes it durable without a copy into the store: no put event yet, the recovery record stays.
    const before = ov.log.head;
    t.fsync(fh);
    expect(ov.log.head).toBe(before);
    expect(fs.readdirSync(path.join(state, 'scratch'))).toHaveLength(1);
    // No release: the process "dies" here.
    await ov.close();
    opened.pop();
    const again = await Overlay.open({ workspace: ws, stateDir: state });
    opened.push(again);
    expect(readFile(again.tree('a'), 'unclosed')).toBe('written before the crash');
    expect(again.tree('a').getattr('unclosed').mode & 0o777).toBe(0o600);
    expect(fs.readdirSync(path.join(state, 'scratch'))).toEqual([]);
  });

  it('recovers the mode and the time set on a file still being written (tar sets them before the last close)', async () => {
    const { ov, ws } = await setup({});
    const state = ov.stateDir;
    ov.createAgent('a', null);
    const t = ov.tree('a');
    // A reused scratch file carries a time of its own: the recovered time must still be the file's.
    writeFile(t, 'earlier', 'x');
    const [spare] = fs.readdirSync(path.join(state, 'scratch'));
    fs.utimesSync(path.join(state, 'scratch', spare!), 1_000_000_000, 1_000_000_000);
    t.create('late', 0o644, O_WRONLY, 0, 0);
    const createdAt = t.getattr('late').mtimeMs;
    const fh = t.create('unpacked', 0o600, O_WRONLY, 0, 0);
    t.write(fh, Buffer.from('content'), 7, 0);
    t.utimens('unpacked', 0, 1_600_000_000_123);
    t.chmod('unpacked', 0o755);
    await ov.close();
    opened.pop();
    const again = await Overlay.open({ workspace: ws, stateDir: state });
    opened.push(again);
    const a = again.tree('a').getattr('unpacked');
    expect([a.mode & 0o7777, a.mtimeMs, a.size]).toEqual([0o755, 1_600_000_000_123, 7]);
    expect(Math.abs(again.tree('a').getattr('late').mtimeMs - createdAt)).toBeLessThan(1000);
  });

  it('a chmod of a file being written: the scratch file carries group, other and owner-execute bits, the record the rest', async () => {
    const { ov, ws } = await setup({});
    const state = ov.stateDir;
    ov.createAgent('a', null);
    const t = ov.tree('a');
    const recorded = () => [...ov.store.dbs.dirty.getRange()].map(({ value }) => (value as DirtyRecord).meta.mode).sort((x, y) => x - y);
    const made = (name: string, mode: number) => {
      const fh = t.create(name, 0o600, O_WRONLY, 0, 0);
      t.write(fh, Buffer.from(name), name.length, 0);
      t.chmod(name, mode);
    };
    made('plain', 0o644); // tar's: no store transaction, the record keeps 0600
    made('tool', 0o755);
    expect(recorded()).toEqual([0o600, 0o600]);
    made('readonly', 0o444); // the owner's write bit: recorded
    made('setuid', 0o4755); // a special bit: recorded
    made('shared', 0o666); // write bits for others: recorded, never on the scratch file
    expect(recorded()).toEqual([0o444, 0o600, 0o600, 0o666, 0o4755]);
    const all = ['plain', 'tool', 'readonly', 'setuid', 'shared'];
    expect(all.map((f) => t.getattr(f).mode & 0o7777)).toEqual([0o644, 0o755, 0o444, 0o4755, 0o666]);
    // The daemon can still read back what it must (the owner's bits of a scratch file stay rw); nobody else can write it.
    for (const f of fs.readdirSync(path.join(state, 'scratch'))) expect(fs.statSync(path.join(state, 'scratch', f)).mode & 0o7622).toBe(0o600);
    await ov.close(); // "dies" with all four open
    opened.pop();
    const again = await Overlay.open({ workspace: ws, stateDir: state });
    opened.push(again);
    const back = again.tree('a');
    expect(all.map((f) => back.getattr(f).mode & 0o7777)).toEqual([0o644, 0o755, 0o444, 0o4755, 0o666]);
    expect(['plain', 'tool'].map((f) => readFile(back, f))).toEqual(['plain', 'tool']);
  });

  it('reuses the scratch files of small files, never those that became blobs', async () => {
    const { ov } = await setup({});
    ov.createAgent('a', null);
    const t = ov.tree('a');
    const scratch = path.join(ov.stateDir, 'scratch');
    for (let i = 0; i < 20; i++) writeFile(t, `small${i}`, `content ${i}`);
    expect(fs.readdirSync(scratch)).toHaveLength(1);
    const big = 'b'.repeat(200_000);
    writeFile(t, 'big', big);
    writeFile(t, 'after', 'small again');
    expect(readFile(t, 'big')).toBe(big);
    expect(readFile(t, 'small7')).toBe('content 7');
    expect(readFile(t, 'after')).toBe('small again');
    // The large file's scratch became its blob: the reused one is empty again, nothing else is left.
    expect(fs.readdirSync(scratch).map((f) => fs.statSync(path.join(scratch, f)).size)).toEqual([0]);
    // Files ingested before their last close (a commit, a truncate by path) leave no crash-recovery
    // record behind: one naming a reused scratch file would recover it over their content.
    const fh = t.create('settled', 0o644, O_WRONLY, 0, 0);
    t.write(fh, Buffer.from('kept'), 4, 0);
    ov.commit('a', 'c');
    t.release(fh);
    t.truncate('small1', 3);
    expect([...ov.store.dbs.dirty.getKeys()]).toEqual([]);
    expect([readFile(t, 'settled'), readFile(t, 'small1')]).toEqual(['kept', 'con']);
  });


  it('releasing many handles at once (an idle sweep): one transaction, each file its own put in order, records gone', async () => {
    const { ov } = await setup({});
    ov.createAgent('a', null);
    const t = ov.tree('a');
    // Settled (an API request) before its close: put already, nothing new to put at the close.
    const settled = t.create('settled', 0o644, O_WRONLY, 0, 0);
    t.write(settled, Buffer.from('kept'), 4, 0);
    t.settle();
    const fhs = ['one', 'two', 'three', 'gone', 'big'].map((name) => {
      const fh = t.create(name, 0o640, O_WRONLY, 0, 0);
      const data = Buffer.from(name === 'big' ? 'b'.repeat(200_000) : `content of ${name}`);
      t.write(fh, data, data.length, 0);
      return fh;
    });
    t.unlink('gone');
    expect([...ov.store.dbs.dirty.getKeys()]).toHaveLength(5); // the unlinked file's went with its name
    const seen: string[] = [];
    const off = ov.log.subscribe((ev) => { if (ev.type === 'put') seen.push(ev.path); });
    const txns = ov.store.dbs.root.transactions;
    t.releaseAll([...fhs, settled]);
    off();
    expect(ov.store.dbs.root.transactions - txns).toBe(1);
    expect(seen).toEqual(['one', 'two', 'three', 'big']);
    expect([...ov.store.dbs.dirty.getKeys()]).toEqual([]);
    expect(t.openCount).toBe(0);
    for (const name of ['one', 'two', 'three']) expect(readFile(t, name)).toBe(`content of ${name}`);
    expect(readFile(t, 'big')).toBe('b'.repeat(200_000));
    expect(readFile(t, 'settled')).toBe('kept');
    expect(t.getattr('two').mode & 0o777).toBe(0o640);
    expect(errnoOf(() => t.getattr('gone'))).toBe('ENOENT');
    // The small files' scratch files are kept empty for reuse; the large one's became its blob.
    const scratch = path.join(ov.stateDir, 'scratch');
    expect(fs.readdirSync(scratch).map((f) => fs.statSync(path.join(scratch, f)).size)).toEqual([0, 0, 0, 0, 0]);
  });

  it('a file lent to the adapter (written through its descriptor elsewhere): size and mtime from the file, stored once given back, a settle recalls it', async () => {
    const { ov } = await setup({});
    ov.createAgent('a', null);
    const t = ov.tree('a');
    const putsOf = (p: string) => [...ov.log.byAgent('a')].filter((e) => e.type === 'put' && e.path === p);
    const fh = t.create('f', 0o644, O_WRONLY, 0, 0);
    // The adapter writes the descriptor itself (the addon's thread), and gives it back when asked.
    let fd = t.lendFd(fh)!;
    expect(t.lendFd(fh)).toBeUndefined(); // one lender at a time
    let recalls = 0;
    const off = t.onSettle(() => {
      recalls++;
      t.returnFd(fh, { changed: true });
    });
    const big = Buffer.alloc(300_000, 'x');
    fs.writeSync(fd, big, 0, big.length, 0);
    fs.futimesSync(fd, 1_000_000, 1_000_000);
    expect(t.getattr('f')).toMatchObject({ size: 300_000, mtimeMs: 1e9 });
    // A commit recalls it first: what is stored is what the file holds, with its mtime.
    ov.commit('a', 'c1');
    off();
    expect(recalls).toBe(1);
    const e = t.layer.get('f');
    expect(e?.kind === 'file' && ov.blobs.get(e.hash).equals(big) && e.mtimeMs).toBe(1e9);
    // Lent again and given back unchanged: the close stores nothing twice (an undo in between would be undone).
    fd = t.lendFd(fh)!;
    t.returnFd(fh, { changed: false });
    t.release(fh);
    expect(putsOf('f')).toHaveLength(1);
    // Given back with the lender's hash of what it wrote in order: stored under it, unread.
    const g = t.create('g', 0o644, O_WRONLY, 0, 0);
    const gfd = t.lendFd(g)!;
    fs.writeSync(gfd, big, 0, big.length, 0);
    t.returnFd(g, { changed: true, hashed: { size: big.length, hash: 'feedfacefeedface' } });
    t.release(g);
    const ge = t.layer.get('g');
    expect(ge?.kind === 'file' && ge.hash).toBe(`feedfacefeedface:${big.length}`);
    expect([...ov.store.dbs.dirty.getKeys()]).toEqual([]);
  });

  it('one file failing in a batch of releases holds back no other; it keeps its record for the next start', async () => {
    const { ov } = await setup({});
    ov.createAgent('a', null);
    const t = ov.tree('a');
    const fhs = ['one', 'big', 'two'].map((name) => {
      const fh = t.create(name, 0o644, O_WRONLY, 0, 0);
      const data = Buffer.from(name === 'big' ? 'b'.repeat(200_000) : name);
      t.write(fh, data, data.length, 0);
      return fh;
    });
    // The large file's scratch name vanishes: linking it into the blob store fails.
    const scratch = path.join(ov.stateDir, 'scratch');
    const bigScratch = fs.readdirSync(scratch).find((f) => fs.statSync(path.join(scratch, f)).size === 200_000)!;
    fs.rmSync(path.join(scratch, bigScratch));
    const seen: string[] = [];
    const off = ov.log.subscribe((ev) => { if (ev.type === 'put') seen.push(ev.path); });
    expect(() => t.releaseAll(fhs)).toThrow(/ENOENT/);
    off();
    expect(seen).toEqual(['one', 'two']);
    expect([...ov.store.dbs.dirty.getKeys()]).toEqual([bigScratch]);
    expect([readFile(t, 'one'), readFile(t, 'two')]).toEqual(['one', 'two']);
    expect(ov.log.get(ov.log.head)).toMatchObject({ type: 'put', path: 'two' });
  });
  it('a chmod, chown or utimens that changes nothing logs nothing', async () => {
    const { ov } = await setup({});
    ov.createAgent('a', null);
    const t = ov.tree('a');
    writeFile(t, 'f', 'x');
    t.chmod('f', 0o640);
    const seq = ov.log.head;
    const a = t.getattr('f');
    t.chown('f', a.uid, a.gid);
    t.chmod('f', 0o640);
    t.utimens('f', 0, a.mtimeMs);
    expect(ov.log.head).toBe(seq);
    t.chmod('f', 0o600);
    expect(ov.log.head).toBe(seq + 1);
  });

  it('a separate state directory works and the workspace stays clean', async () => {
    const state = tempDir();
    const { ov, ws } = await openOverlay({ a: '1' }, path.join(state, 'st'));
    opened.push(ov);
    ov.createAgent('a', null);
    writeFile(ov.tree('a'), 'a', '2');
    expect(fs.readdirSync(ws)).toEqual(['a']);
  });
});

describe('replay', () => {
  it('rebuilds any agent at any event from the log alone', async () => {
    const { ov } = await setup({ 'f': 'base', 'd/x': 'x' });
    ov.createAgent('p', null);
    const p = ov.tree('p');
    writeFile(p, 'f', 'p1');
    const atP1 = { seq: ov.log.head, snap: snapshot(p.tree, ov) };
    p.rename('d', 'd2', 0);
    ov.commit('p', 'c1');
    ov.createAgent('c', 'p');
    const c = ov.tree('c');
    writeFile(c, 'd2/y', 'y');
    c.chmod('f', 0o600);
    expect(snapshot(ov.replay('c'), ov)).toEqual(snapshot(c.tree, ov));
    expect(snapshot(ov.replay('p', atP1.seq), ov)).toEqual(atP1.snap);
    expect(() => ov.replay('c', 1)).toThrow(/did not exist/);
  });
});
