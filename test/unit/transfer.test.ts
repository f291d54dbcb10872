import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Cascade } from '../../src/cascade/cascade.js';
import type { Overlay } from '../../src/overlay/overlay.js';
import { exportAgent } from '../../src/transfer/export.js';
import { importBundle } from '../../src/transfer/import.js';
import { openOverlay, readFile, removeTempDirs, snapshot, tempDir, writeFile } from '../helpers/core.js';

const opened: Overlay[] = [];
afterEach(async () => {
  for (const ov of opened.splice(0)) await ov.close();
  removeTempDirs();
});

const WORKSPACE = {
  'app.txt': Array.from({ length: 40 }, (_, i) => `line ${i + 1}`).join('\n') + '\n',
  'src/': '',
  'src/a.ts': 'export const a = 1;\n',
  'src/old/x.txt': 'x\n',
  'link': '->app.txt',
  'gone.txt': 'to be deleted\n',
};

async function pair() {
  const a = await openOverlay(WORKSPACE);
  const b = await openOverlay(WORKSPACE);
  opened.push(a.ov, b.ov);
  return { a: a.ov, b: b.ov, bWs: b.ws };
}

/** par (root) with a commit, kid on it with committed, rebased and uncommitted work of every kind. */
function buildLineage(ov: Overlay): void {
  const cascade = new Cascade(ov);
  ov.createAgent('par', null);
  writeFile(ov.tree('par'), 'app.txt', readFile(ov.tree('par'), 'app.txt').replace('line 5\n', 'par line 5\n'));
  writeFile(ov.tree('par'), 'par.txt', 'from par\n');
  ov.commit('par', 'par 1');
  ov.createAgent('kid', 'par');
  const kid = ov.tree('kid');
  writeFile(kid, 'app.txt', readFile(kid, 'app.txt').replace('line 30\n', 'kid line 30\n'));
  writeFile(kid, 'big.bin', Buffer.alloc(200_000, 7));
  writeFile(kid, 'run.sh', '#!/bin/sh\necho hi\n', 0o755);
  kid.symlink('src/a.ts', 'to-a', 0, 0);
  kid.mkdir('empty', 0o700, 0, 0);
  kid.unlink('gone.txt');
  kid.rename('src/old', 'src/new', 0);
  ov.commit('kid', 'kid 1');
  // A parent commit rebases the kid (AGENT_REBASED in its log), then more uncommitted work.
  writeFile(ov.tree('par'), 'app.txt', readFile(ov.tree('par'), 'app.txt').replace('line 10\n', 'par line 10\n'));
  ov.commit('par', 'par 2');
  cascade.afterCommitOf('par');
  writeFile(kid, 'late.txt', 'not committed\n');
  kid.chmod('src/a.ts', 0o600);
}

const bundlePath = () => path.join(tempDir('cowfs-bundle-'), 'kid.bundle');

describe('export and import', () => {
  it('another store rebuilds the same tree, head, history and ancestors', async () => {
    const { a, b } = await pair();
    buildLineage(a);
    const out = bundlePath();
    const ex = await exportAgent(a, 'kid', out, new Set());
    expect(ex.lineage).toEqual(['par', 'kid']);
    const im = await importBundle(b, out, {});
    expect(im.created).toEqual(['par', 'kid']);
    expect([...b.log.byAgent('kid')].map((e) => e.type)).toContain('AGENT_REBASED');
    expect(im.warnings).toEqual([]);
    const kidTree = snapshot(a.tree('kid').tree, a);
    expect(kidTree['app.txt']).toContain('par line 10');
    expect(kidTree['app.txt']).toContain('kid line 30');
    expect(snapshot(b.tree('kid').tree, b)).toEqual(kidTree);
    expect(snapshot(b.commitView(b.agent('kid').head), b)).toEqual(snapshot(a.commitView(a.agent('kid').head), a));
    expect(snapshot(b.tree('par').tree, b)).toEqual(snapshot(a.tree('par').tree, a));
    // Replay from the imported log alone gives the same tree.
    expect(snapshot(b.replay('kid'), b)).toEqual(kidTree);
    // Inode numbers are allocated here, not copied from the sender.
    const inos = [...b.tree('kid').layer.entriesList()].map(([, e]) => ('ino' in e ? e.ino : 0)).filter(Boolean);
    expect(inos.every((i) => i >= 0x80000000)).toBe(true);
  });

  it('carries undo: the receiver\'s tree, and a redo there, equal the sender\'s', async () => {
    const { a, b } = await pair();
    buildLineage(a);
    writeFile(a.tree('kid'), 'undone.txt', 'soon undone\n');
    a.undo('kid');
    // The receiver's log has events of its own, so the imported ones get other numbers.
    b.createAgent('other', null);
    for (let i = 0; i < 5; i++) writeFile(b.tree('other'), `o${i}.txt`, `${i}\n`);
    const out = bundlePath();
    await exportAgent(a, 'kid', out, new Set());
    await importBundle(b, out, {});
    expect(snapshot(b.tree('kid').tree, b)).toEqual(snapshot(a.tree('kid').tree, a));
    // The undo's event numbers were renumbered: a second undo (a redo) brings the same file back on both sides.
    a.undo('kid');
    b.undo('kid');
    expect(readFile(b.tree('kid'), 'undone.txt')).toBe('soon undone\n');
    expect(snapshot(b.tree('kid').tree, b)).toEqual(snapshot(a.tree('kid').tree, a));
  });

  it('with the receiver\'s have-manifest only the missing blobs travel', async () => {
    const { a, b } = await pair();
    buildLineage(a);
    const full = bundlePath();
    await exportAgent(a, 'kid', full, new Set());
    await importBundle(b, full, { as: 'kid1' });
    writeFile(a.tree('kid'), 'newer.bin', Buffer.alloc(100_000, 3));
    const inc = bundlePath();
    const r = await exportAgent(a, 'kid', inc, new Set(b.blobs.ids()));
    expect(r.included).toBe(1);
    expect(fs.statSync(inc).size).toBeLessThan(fs.statSync(full).size / 1.5);
    const im = await importBundle(b, inc, { as: 'kid2', parent: 'par' });
    expect(im.received).toBe(1);
    expect(snapshot(b.tree('kid2').tree, b)).toEqual(snapshot(a.tree('kid').tree, a));
    // A manifest of another store leaves out blobs this one lacks: refused.
    const { b: c } = await pair();
    await expect(importBundle(c, inc, {})).rejects.toThrow(/leaves out \d+ blobs this store does not hold/);
    expect(c.agents()).toEqual([]);
  });

  it('a flipped byte anywhere or a cut bundle is refused and imports nothing', async () => {
    const { a, b } = await pair();
    buildLineage(a);
    const out = bundlePath();
    await exportAgent(a, 'kid', out, new Set());
    const good = fs.readFileSync(out);
    const blobsBefore = [...b.blobs.ids()].length;
    const seqBefore = b.log.head;
    const positions = [5, 20, 100, Math.floor(good.length / 3), Math.floor(good.length / 2), good.length - 40, good.length - 1];
    for (const pos of positions) {
      const bad = Buffer.from(good);
      bad[pos] = bad[pos]! ^ 0x10;
      fs.writeFileSync(out, bad);
      await expect(importBundle(b, out, {}), `flip at ${pos}`).rejects.toThrow(/corrupt|not a cowfs bundle|cut short|format|does not match/);
    }
    for (const len of [0, 10, 200, Math.floor(good.length / 2), good.length - 1]) {
      fs.writeFileSync(out, good.subarray(0, len));
      await expect(importBundle(b, out, {}), `cut at ${len}`).rejects.toThrow(/cut short|not a cowfs bundle|corrupt/);
    }
    expect(b.agents()).toEqual([]);
    expect([...b.blobs.ids()].length).toBe(blobsBefore);
    expect(b.log.head).toBe(seqBefore);
    expect(fs.readdirSync(b.stateDir).filter((n) => n.startsWith('import-'))).toEqual([]);
    fs.writeFileSync(out, good);
    await importBundle(b, out, {});
    expect(snapshot(b.tree('kid').tree, b)).toEqual(snapshot(a.tree('kid').tree, a));
  });

  it('refuses a workspace that differs where the lineage changed it, unless forced; names must be free', async () => {
    const { a, b, bWs } = await pair();
    buildLineage(a);
    const out = bundlePath();
    await exportAgent(a, 'kid', out, new Set());
    fs.writeFileSync(path.join(bWs, 'app.txt'), 'something else\n');
    await expect(importBundle(b, out, {})).rejects.toThrow(/differs from the sender's .*app\.txt.*--force/);
    expect(b.agents()).toEqual([]);
    const forced = await importBundle(b, out, { force: true });
    expect(forced.warnings[0]).toMatch(/app\.txt/);
    await expect(importBundle(b, out, { force: true })).rejects.toThrow(/agent par already exists here.*--parent par/);
    await expect(importBundle(b, out, { parent: 'par' })).rejects.toThrow(/agent kid already exists here.*--as/);
    await expect(importBundle(b, out, { parent: 'nope', as: 'k2' })).rejects.toThrow(/no agent named "nope"/);
  });
});
