import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { collectGarbage } from '../../src/overlay/gc.js';
import type { Overlay } from '../../src/overlay/overlay.js';
import { openOverlay, readFile, removeTempDirs, snapshot, writeFile } from '../helpers/core.js';

const opened: Overlay[] = [];
afterEach(async () => {
  for (const ov of opened.splice(0)) await ov.close();
  removeTempDirs();
});

const big = (n: number) => Buffer.alloc(100_000, n);

async function store() {
  const { ov } = await openOverlay({ 'a.txt': 'a\n' });
  opened.push(ov);
  ov.createAgent('keep', null);
  writeFile(ov.tree('keep'), 'k.bin', big(1));
  writeFile(ov.tree('keep'), 'k.txt', 'first\n');
  ov.commit('keep', 'k');
  writeFile(ov.tree('keep'), 'k.txt', 'second\n');
  ov.createAgent('doomed', null);
  for (let i = 0; i < 5; i++) writeFile(ov.tree('doomed'), `d${i}.bin`, big(10 + i));
  writeFile(ov.tree('doomed'), 'small.txt', 'only doomed has this\n');
  ov.commit('doomed', 'd');
  return ov;
}

describe('gc', () => {
  it('frees what only agents removed long enough ago used, keeps every live tree and its history', async () => {
    const ov = await store();
    const before = snapshot(ov.tree('keep').tree, ov);
    ov.removeAgent('doomed');
    const young = await collectGarbage(ov, { dryRun: false, keepRemovedMs: 3600_000 });
    expect(young.freedBlobs).toBe(0);
    const dry = await collectGarbage(ov, { dryRun: true, keepRemovedMs: 0 });
    expect(dry.freedBlobs).toBe(6);
    expect(dry.droppedAgents).toEqual(['doomed']);
    const blobsBefore = [...ov.blobs.ids()].length;
    expect([...ov.blobs.ids()].length).toBe(blobsBefore);
    const r = await collectGarbage(ov, { dryRun: false, keepRemovedMs: 0 });
    expect(r.freedBlobs).toBe(6);
    expect(r.freedBytes).toBe(5 * 100_000 + 'only doomed has this\n'.length);
    expect(r.droppedAgents).toEqual(['doomed']);
    expect(fs.readdirSync(ov.store.blobDir).flatMap((d) => fs.readdirSync(`${ov.store.blobDir}/${d}`))).toHaveLength(1);
    expect(snapshot(ov.tree('keep').tree, ov)).toEqual(before);
    // The older content of k.txt is history of a live agent: replay still has it.
    expect(snapshot(ov.replay('keep', ov.agent('keep').createdSeq + 3), ov)['k.txt']).toBe('file 644 first\n');
    const again = await collectGarbage(ov, { dryRun: false, keepRemovedMs: 0 });
    expect(again.freedBlobs).toBe(0);
  });

  it('never deletes a blob stored or found again while it runs', async () => {
    const ov = await store();
    ov.removeAgent('doomed');
    const keep = ov.tree('keep');
    let wrote = false;
    const r = await collectGarbage(ov, { dryRun: false, keepRemovedMs: 0 }, (p) => {
      // After the mark, before the sweep.
      if (wrote || p.phase !== 'sweeping' || p.done !== 0) return;
      wrote = true;
      // Same bytes as a doomed agent's file, written mid-gc: the dedup hit must survive.
      writeFile(keep, 'revived.bin', big(12));
      writeFile(keep, 'revived.txt', 'only doomed has this\n');
    });
    expect(wrote).toBe(true);
    expect(r.keptNew).toBeGreaterThanOrEqual(2);
    expect(readFile(keep, 'revived.txt')).toBe('only doomed has this\n');
    const revived = keep.layer.get('revived.bin');
    expect(revived?.kind === 'file' && ov.blobs.get(revived.hash).equals(big(12))).toBe(true);
  });

  it('removes files a killed gc left without records', async () => {
    const ov = await store();
    ov.removeAgent('doomed');
    // A gc killed between deleting records and files: simulate by deleting the records only.
    const ids = [...ov.blobs.ids()].filter((id) => ov.blobs.fileOf(id) && ov.blobs.get(id)[0] === 10);
    ov.store.txn(() => ov.blobs.removeRecords(ids));
    const r = await collectGarbage(ov, { dryRun: false, keepRemovedMs: 0 });
    expect(r.strayFiles).toBe(1);
    expect(r.strayBytes).toBe(100_000);
  });
});
