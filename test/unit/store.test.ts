/**
 * Unit tests of the store's parts on their own: BlobStore (content
 * addressing, dedup, collisions, large blobs as files, putFile), EventLog
 * (order, per-agent reads, subscribers, sequence across reopen) and the
 * Registry's refusals (a cycle in a hand-corrupted store).
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { EventLog } from '../../src/events/log.js';
import type { CowEvent } from '../../src/events/types.js';
import { Overlay } from '../../src/overlay/overlay.js';
import { Registry } from '../../src/overlay/registry.js';
import { BlobStore, INLINE_MAX, blobSize } from '../../src/store/blobs.js';
import { Store } from '../../src/store/env.js';
import { hash64 } from '../../src/store/hash.js';
import { makeWorkspace, readFile, removeTempDirs, tempDir, writeFile } from '../helpers/core.js';

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
  removeTempDirs();
});

async function openStore(stateDir = path.join(tempDir('cowfs-store-'), 'state')): Promise<Store> {
  const store = await Store.open(stateDir);
  closers.push(() => store.close());
  return store;
}

async function openOv(files: Record<string, string> = {}): Promise<Overlay> {
  const ov = await Overlay.open({ workspace: makeWorkspace(files), stateDir: path.join(tempDir('cowfs-store-'), 'state') });
  closers.push(() => ov.close());
  return ov;
}

/** Every file under the blob directory (large blobs), relative. */
function blobFiles(store: Store): string[] {
  const out: string[] = [];
  const visit = (dir: string) => {
    for (const d of fs.readdirSync(dir, { withFileTypes: true })) {
      const abs = path.join(dir, d.name);
      if (d.isDirectory()) visit(abs);
      else out.push(path.relative(store.blobDir, abs));
    }
  };
  visit(store.blobDir);
  return out.sort();
}

/** The id content would get with no collision: `xxhash64:size` (blobs.ts). */
const naturalId = (bytes: Buffer) => `${hash64(bytes)}:${bytes.length}`;
/** Where a large blob lives (blobs.ts: blobs/<first 2 chars>/<id with ':' → '-'>). */
const largePath = (store: Store, id: string) => path.join(store.blobDir, id.slice(0, 2), id.replace(/:/g, '-'));

const big = (n: number, seed: string) => Buffer.alloc(n, seed);

describe('BlobStore', () => {
  it('addresses content by xxhash64 and size, and stores identical content once', async () => {
    const store = await openStore();
    const blobs = new BlobStore(store);
    const a = blobs.put(Buffer.from('hello'));
    expect(a).toBe(naturalId(Buffer.from('hello')));
    expect(a).toMatch(/^[0-9a-f]{16}:5$/);
    expect(blobs.size(a)).toBe(5);
    expect(blobSize(a)).toBe(5);
    expect(blobs.put(Buffer.from('hello'))).toBe(a);
    expect(blobs.put(Buffer.from('hellO'))).not.toBe(a);
    expect(blobs.get(a).toString()).toBe('hello');
    expect(blobs.has(a)).toBe(true);
    expect(store.dbs.blobMeta.getKeysCount()).toBe(2);
    expect(store.dbs.blobs.getKeysCount()).toBe(2);
    const empty = blobs.put(Buffer.alloc(0));
    expect(empty).toMatch(/:0$/);
    expect(blobs.get(empty).length).toBe(0);
    expect(blobs.has('0000000000000000:3')).toBe(false);
    expect(() => blobs.get('0000000000000000:3')).toThrow(/missing/);
  });

  it('stores identical content once however many agents write it', async () => {
    const ov = await openOv({ 'f': 'from the workspace' });
    const small = 'the same small content\n';
    const large = big(200 * 1024, 'L');
    const names = ['a', 'b', 'c', 'd'];
    for (const name of names) {
      ov.createAgent(name, null);
      writeFile(ov.tree(name), 'small.txt', small);
      writeFile(ov.tree(name), `${name}.bin`, large);
      writeFile(ov.tree(name), 'copy-of-f', 'from the workspace');
    }
    const hashes = (p: (n: string) => string) => new Set(names.map((n) => {
      const e = ov.tree(n).layer.get(p(n));
      return e?.kind === 'file' ? e.hash : undefined;
    }));
    expect(hashes(() => 'small.txt').size).toBe(1);
    expect(hashes((n) => `${n}.bin`).size).toBe(1);
    // Three distinct contents: small, large, the workspace file's bytes (written by the agents).
    expect(ov.store.dbs.blobMeta.getKeysCount()).toBe(3);
    expect(blobFiles(ov.store)).toHaveLength(1);
    expect(readFile(ov.tree('d'), 'd.bin')).toBe(large.toString());
    // Copy-up of an inherited workspace file stores its bytes (the merge base) once too.
    ov.tree('a').chmod('f', 0o600);
    ov.tree('b').truncate('f', 4);
    expect(ov.store.dbs.blobMeta.getKeysCount()).toBe(4);
  });

  it('never returns the wrong content on a hash collision (inline blobs)', async () => {
    const store = await openStore();
    const blobs = new BlobStore(store);
    const mine = Buffer.from('my content');
    const other = Buffer.from('OTHER BYTE'); // same size: a collision on xxhash64 and size
    const id = naturalId(mine);
    // Forge the collision: the id `mine` would get already names other bytes.
    store.txn(() => {
      store.dbs.blobs.putSync(id, other);
      store.dbs.blobMeta.putSync(id, { size: other.length, file: false });
    });
    const got = blobs.put(mine);
    expect(got).not.toBe(id);
    expect(got).toBe(`${id}:1`);
    expect(blobs.get(got).equals(mine)).toBe(true);
    expect(blobs.get(id).equals(other)).toBe(true);
    expect(blobs.size(got)).toBe(mine.length);
    // Stable: the same content finds its own id again, through put and putFile.
    expect(blobs.put(mine)).toBe(got);
    const file = path.join(tempDir(), 'mine');
    fs.writeFileSync(file, mine);
    expect(blobs.putFile(file, 'copy')).toBe(got);
    // A second collision gets the next suffix.
    const third = Buffer.from('3rd conten');
    store.txn(() => {
      store.dbs.blobs.putSync(naturalId(third), other);
      store.dbs.blobMeta.putSync(naturalId(third), { size: other.length, file: false });
      store.dbs.blobs.putSync(`${naturalId(third)}:1`, mine);
      store.dbs.blobMeta.putSync(`${naturalId(third)}:1`, { size: mine.length, file: false });
    });
    expect(blobs.put(third)).toBe(`${naturalId(third)}:2`);
    expect(blobs.get(`${naturalId(third)}:2`).equals(third)).toBe(true);
    // Reading a range of an inline blob.
    const buf = Buffer.alloc(4);
    expect(blobs.readInline(got, buf, 4, 3)).toBe(4);
    expect(buf.toString()).toBe('cont');
    expect(blobs.readInline(got, buf, 4, 100)).toBe(0);
  });

  it('never returns the wrong content on a hash collision (large blobs, put and putFile)', async () => {
    const store = await openStore();
    const blobs = new BlobStore(store);
    const mine = big(100 * 1024, 'm');
    const other = big(100 * 1024, 'o');
    const id = naturalId(mine);
    fs.mkdirSync(path.dirname(largePath(store, id)), { recursive: true });
    fs.writeFileSync(largePath(store, id), other);
    store.dbs.blobMeta.putSync(id, { size: other.length, file: true });

    const file = path.join(tempDir(), 'mine.bin');
    fs.writeFileSync(file, mine);
    const viaFile = blobs.putFile(file, 'copy');
    expect(viaFile).toBe(`${id}:1`);
    expect(blobs.get(viaFile).equals(mine)).toBe(true);
    expect(blobs.put(mine)).toBe(viaFile);
    expect(blobs.get(id).equals(other)).toBe(true);

    // The same forged collision met first by put(bytes).
    const mine2 = big(90 * 1024, 'n');
    const id2 = naturalId(mine2);
    fs.mkdirSync(path.dirname(largePath(store, id2)), { recursive: true });
    fs.writeFileSync(largePath(store, id2), big(90 * 1024, 'p'));
    store.dbs.blobMeta.putSync(id2, { size: 90 * 1024, file: true });
    const viaPut = blobs.put(mine2);
    expect(viaPut).toBe(`${id2}:1`);
    expect(blobs.get(viaPut).equals(mine2)).toBe(true);
    expect(fs.readFileSync(blobs.fileOf(viaPut)!).equals(mine2)).toBe(true);
  });

  it('keeps blobs over 64 KiB as files and smaller ones inline', async () => {
    const store = await openStore();
    const blobs = new BlobStore(store);
    const atLimit = blobs.put(big(INLINE_MAX, 'i'));
    const over = blobs.put(big(INLINE_MAX + 1, 'f'));
    const huge = blobs.put(big(5 * 1024 * 1024 + 7, 'h'));
    expect(INLINE_MAX).toBe(64 * 1024);
    expect(blobs.fileOf(atLimit)).toBeUndefined();
    expect(store.dbs.blobs.get(atLimit)).toBeDefined();
    for (const id of [over, huge]) {
      const file = blobs.fileOf(id)!;
      expect(file.startsWith(store.blobDir)).toBe(true);
      expect(fs.statSync(file).size).toBe(blobs.size(id));
      expect(store.dbs.blobs.get(id)).toBeUndefined();
      expect(store.dbs.blobMeta.get(id)).toEqual({ size: blobs.size(id), file: true });
    }
    expect(blobs.get(huge).equals(big(5 * 1024 * 1024 + 7, 'h'))).toBe(true);
    expect(blobFiles(store)).toHaveLength(2);
    // No temporary files left behind, and copyTo gives the bytes back.
    expect(blobFiles(store).some((f) => f.includes('.tmp'))).toBe(false);
    const out = path.join(tempDir(), 'out');
    blobs.copyTo(over, out);
    expect(fs.readFileSync(out).equals(big(INLINE_MAX + 1, 'f'))).toBe(true);
    blobs.copyTo(atLimit, `${out}2`);
    expect(fs.readFileSync(`${out}2`).equals(big(INLINE_MAX, 'i'))).toBe(true);
  });

  it('putFile: the streaming hash equals the one-shot one; link shares the inode, copy does not', async () => {
    const store = await openStore();
    const blobs = new BlobStore(store);
    const dir = tempDir();
    // Over one 1 MiB read chunk, so the streaming hash sees several updates.
    const content = Buffer.concat([big(1024 * 1024, 'a'), big(300 * 1024 + 3, 'b')]);
    const linked = path.join(dir, 'linked');
    const copied = path.join(dir, 'copied');
    fs.writeFileSync(linked, content);
    fs.writeFileSync(copied, Buffer.concat([content, Buffer.from('!')]));

    const l = blobs.putFile(linked, 'link');
    expect(l).toBe(naturalId(content));
    expect(fs.statSync(blobs.fileOf(l)!).ino).toBe(fs.statSync(linked).ino);
    expect(fs.existsSync(linked)).toBe(true); // not consumed: the caller deletes it after its change committed

    const c = blobs.putFile(copied, 'copy');
    expect(fs.statSync(blobs.fileOf(c)!).ino).not.toBe(fs.statSync(copied).ino);
    fs.writeFileSync(copied, 'changed later');
    expect(blobs.get(c).length).toBe(content.length + 1);

    // Same bytes again: found, not stored twice, whatever the mode.
    const again = path.join(dir, 'again');
    fs.writeFileSync(again, content);
    expect(blobs.putFile(again, 'link')).toBe(l);
    expect(blobs.put(content)).toBe(l);
    expect(fs.statSync(again).nlink).toBe(1);
    expect(blobFiles(store)).toHaveLength(2);

    // Small files go inline whatever the mode.
    const small = path.join(dir, 'small');
    fs.writeFileSync(small, 'tiny');
    const s = blobs.putFile(small, 'link');
    expect(blobs.fileOf(s)).toBeUndefined();
    expect(fs.statSync(small).nlink).toBe(1);
    expect(blobs.get(s).toString()).toBe('tiny');
  });

  it('survives reopening the store', async () => {
    const stateDir = path.join(tempDir(), 'state');
    const store = await Store.open(stateDir);
    const blobs = new BlobStore(store);
    const small = blobs.put(Buffer.from('persisted'));
    const large = blobs.put(big(70 * 1024, 'P'));
    await store.close();
    const again = await openStore(stateDir);
    const blobs2 = new BlobStore(again);
    expect(blobs2.get(small).toString()).toBe('persisted');
    expect(blobs2.get(large).equals(big(70 * 1024, 'P'))).toBe(true);
    expect(blobs2.put(Buffer.from('persisted'))).toBe(small);
  });
});

describe('EventLog', () => {
  const mkdirOp = (p: string) => ({
    type: 'mkdir' as const, path: p,
    entry: { kind: 'dir' as const, mode: 0o755, mtimeMs: 0, ino: 1, uid: 0, gid: 0, opaque: false, redirect: null },
  });

  it('appends in one total order and reads by sequence and by agent', async () => {
    const store = await openStore();
    const log = new EventLog(store);
    expect(log.head).toBe(0);
    const appended: CowEvent[] = [];
    store.txn(() => {
      for (let i = 0; i < 10; i++) appended.push(log.append(i % 3 === 0 ? 'x' : 'y', mkdirOp(`d${i}`)));
    });
    log.publish();
    expect(appended.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(log.head).toBe(10);
    expect([...log.range()].map((e) => e.seq)).toEqual(appended.map((e) => e.seq));
    expect([...log.range(4, 6)].map((e) => (e as { path: string }).path)).toEqual(['d3', 'd4', 'd5']);
    expect(log.get(7)).toMatchObject({ seq: 7, agent: 'x', type: 'mkdir', path: 'd6' });
    expect(log.get(11)).toBeUndefined();
    expect([...log.byAgent('x')].map((e) => e.seq)).toEqual([1, 4, 7, 10]);
    expect([...log.byAgent('x', 7)].map((e) => e.seq)).toEqual([1, 4, 7]);
    expect([...log.byAgent('x', Infinity, 5)].map((e) => e.seq)).toEqual([7, 10]);
    expect([...log.byAgent('y', 3)].map((e) => e.seq)).toEqual([2, 3]);
    expect([...log.byAgent('nobody')]).toEqual([]);
    // Agents whose names share a prefix do not see each other's events.
    store.txn(() => log.append('x1', mkdirOp('other')));
    expect([...log.byAgent('x')].map((e) => e.seq)).toEqual([1, 4, 7, 10]);
    expect([...log.byAgent('x1')].map((e) => e.seq)).toEqual([11]);
    for (const e of log.range()) expect(typeof e.time).toBe('number');
  });

  it('tells subscribers after the transaction committed, in order; a rolled-back one consumes no sequence', async () => {
    const store = await openStore();
    const log = new EventLog(store);
    const seen: number[] = [];
    const seen2: string[] = [];
    const off = log.subscribe((e) => seen.push(e.seq));
    log.subscribe((e) => seen2.push(e.agent));
    store.txn(() => {
      log.append('a', mkdirOp('1'));
      log.append('b', mkdirOp('2'));
    });
    expect(seen).toEqual([]); // not before publish
    log.publish();
    expect(seen).toEqual([1, 2]);
    expect(seen2).toEqual(['a', 'b']);
    log.publish();
    expect(seen).toEqual([1, 2]);

    expect(() => store.txn(() => {
      log.append('a', mkdirOp('3'));
      throw new Error('rolled back');
    })).toThrow(/rolled back/);
    log.discardPending();
    log.publish();
    expect(seen).toEqual([1, 2]);
    expect(log.get(3)).toBeUndefined();
    expect(log.head).toBe(2);

    off();
    store.txn(() => log.append('a', mkdirOp('4')));
    log.publish();
    expect(seen).toEqual([1, 2]);
    expect(seen2).toEqual(['a', 'b', 'a']);
    expect(log.get(3)).toMatchObject({ path: '4' });
  });

  it('an event a subscriber causes reaches every subscriber after the events before it', async () => {
    const store = await openStore();
    const log = new EventLog(store);
    // The first subscriber logs one more event when it sees the first (as a mount releasing a file does).
    log.subscribe((e) => {
      if (e.seq !== 1) return;
      store.txn(() => log.append('a', mkdirOp('caused')));
      log.publish();
    });
    const seen: number[] = [];
    log.subscribe((e) => seen.push(e.seq));
    store.txn(() => {
      log.append('a', mkdirOp('1'));
      log.append('a', mkdirOp('2'));
    });
    log.publish();
    expect(seen).toEqual([1, 2, 3]);
  });

  it('streams what the overlay does: one event per operation, after it is durable', async () => {
    const ov = await openOv({ 'f': 'x' });
    const evs: CowEvent[] = [];
    ov.log.subscribe((e) => evs.push(e));
    ov.createAgent('a', null);
    const t = ov.tree('a');
    t.mkdir('d', 0o755, 0, 0);
    writeFile(t, 'd/g', 'g');
    t.rename('d', 'e', 0);
    t.unlink('f');
    ov.commit('a', 'msg');
    expect(evs.map((e) => e.type)).toEqual(['AGENT_CREATED', 'mkdir', 'put', 'move', 'delete', 'AGENT_COMMIT_CREATED']);
    expect(evs.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6]);
    for (const e of evs) expect(ov.log.get(e.seq)).toEqual(e);
    const commit = evs[5]!;
    expect(commit.type === 'AGENT_COMMIT_CREATED' && commit.ops.map((o) => o.type)).toEqual(['mkdir', 'put', 'move', 'delete']);
  });

  it('continues the sequence after reopening', async () => {
    const stateDir = path.join(tempDir(), 'state');
    const store = await Store.open(stateDir);
    const log = new EventLog(store);
    store.txn(() => {
      for (let i = 0; i < 5; i++) log.append('a', mkdirOp(`d${i}`));
    });
    await store.close();
    const again = await openStore(stateDir);
    const log2 = new EventLog(again);
    expect(log2.head).toBe(5);
    const ev = again.txn(() => log2.append('b', mkdirOp('next')));
    expect(ev.seq).toBe(6);
    expect([...log2.range()].map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6]);
    expect([...log2.byAgent('a')]).toHaveLength(5);
  });
});

describe('Registry', () => {
  it('refuses a parent chain that forms a cycle (a hand-corrupted store)', async () => {
    const ov = await openOv({});
    ov.createAgent('a', null);
    ov.createAgent('b', 'a');
    ov.createAgent('c', 'b');
    // Corrupt: a's parent becomes c, so a → c → b → a.
    ov.store.dbs.agents.putSync('a', { ...ov.agent('a'), parent: 'c' });
    const reg = new Registry(ov.store);
    expect(() => reg.checkNew('d', 'b')).toThrow(/cycle/);
    expect(() => reg.checkNew('d', 'a')).toThrow(/cycle/);
    // A self-loop too.
    ov.store.dbs.agents.putSync('c', { ...ov.agent('c'), parent: 'c' });
    expect(() => new Registry(ov.store).checkNew('e', 'c')).toThrow(/cycle/);
  });

  it('a reopened overlay refuses to create an agent under a cycle, and logs nothing', async () => {
    const ws = makeWorkspace({});
    const stateDir = path.join(tempDir(), 'state');
    const ov = await Overlay.open({ workspace: ws, stateDir });
    ov.createAgent('a', null);
    ov.createAgent('b', 'a');
    ov.store.dbs.agents.putSync('a', { ...ov.agent('a'), parent: 'b' });
    await ov.close();
    const again = await Overlay.open({ workspace: ws, stateDir });
    closers.push(() => again.close());
    const head = again.log.head;
    expect(() => again.createAgent('x', 'b')).toThrow(/cycle/);
    expect(again.log.head).toBe(head);
    expect(again.agents().map((a) => a.name).sort()).toEqual(['a', 'b']);
  });

  it('refuses bad names, missing parents, duplicates; commit ids continue after reopening', async () => {
    const ws = makeWorkspace({});
    const stateDir = path.join(tempDir(), 'state');
    const ov = await Overlay.open({ workspace: ws, stateDir });
    for (const bad of ['', 'A', '.x', '_x', 'a/b', 'a b', 'é', 'x'.repeat(65)]) {
      expect(() => ov.createAgent(bad, null), bad).toThrow(/invalid agent name/);
    }
    expect(ov.createAgent('x'.repeat(64), null).name).toHaveLength(64);
    expect(() => ov.createAgent('k', 'missing')).toThrow(/no agent named "missing"/);
    ov.createAgent('p', null);
    expect(() => ov.createAgent('p', null)).toThrow(/already exists/);
    const c1 = ov.commit('p', 'one');
    await ov.close();
    const again = await Overlay.open({ workspace: ws, stateDir });
    closers.push(() => again.close());
    const c2 = again.commit('p', 'two');
    expect(c2.id).toBeGreaterThan(c1.id);
    expect(again.registry.commit(c2.id)).toMatchObject({ prev: c1.id, message: 'two', agent: 'p' });
    const kid = again.createAgent('kid', 'p');
    expect(kid.base).toBe(c2.id);
    expect(again.registry.chainOf(kid.head)).toHaveLength(2);
  });
});
