import path from 'node:path';
import DiffMatchPatch from 'diff-match-patch';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { Cascade } from '../../src/cascade/cascade.js';
import type { ApiContext } from '../../src/daemon/api.js';
import { withPayload } from '../../src/daemon/event-payload.js';
import { ApiServer } from '../../src/daemon/server.js';
import type { Overlay } from '../../src/overlay/overlay.js';
import { openOverlay, readFile, removeTempDirs, tempDir, writeFile } from '../helpers/core.js';

const opened: Overlay[] = [];
const servers: ApiServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
  for (const ov of opened.splice(0)) await ov.close();
  removeTempDirs();
});

const text = (n: number, tag = '') => Array.from({ length: n }, (_, i) => `line ${i + 1}${tag}\n`).join('');

describe('streamed events', () => {
  it('carry what a subscriber elsewhere needs to apply a rebase: patches against the parent\'s file', async () => {
    const { ov } = await openOverlay({ 'app.txt': text(40) });
    opened.push(ov);
    ov.createAgent('p', null);
    ov.createAgent('c', 'p');
    const committed = text(40).replace('line 30\n', 'child 30\n');
    writeFile(ov.tree('c'), 'app.txt', committed);
    ov.commit('c', 'c1');
    writeFile(ov.tree('c'), 'app.txt', committed.replace('line 35\n', 'child 35, not committed\n'));
    writeFile(ov.tree('p'), 'app.txt', text(40).replace('line 5\n', 'parent 5\n'));
    ov.commit('p', 'p1');
    new Cascade(ov).fromCommit('p');
    const rebased = [...ov.log.byAgent('c')].find((e) => e.type === 'AGENT_REBASED')!;
    const { files } = withPayload(ov, rebased);
    // The working tree's merge and the head's (what c's children get next) differ: both travel.
    expect(files!.map((f) => f.path)).toEqual(['app.txt', 'app.txt']);
    const dmp = new DiffMatchPatch();
    const applied = files!.map((f) => {
      if (!('patch' in f)) throw new Error('expected a patch');
      // The remote has the parent's new file (from the parent's commit event), and the patch.
      const parentFile = ov.blobs.get(f.against).toString();
      expect(parentFile).toBe(readFile(ov.tree('p'), 'app.txt'));
      const [result, ok] = dmp.patch_apply(dmp.patch_fromText(f.patch), parentFile);
      expect(ok.every(Boolean)).toBe(true);
      expect(ov.blobs.get(f.hash).toString()).toBe(result);
      return result;
    });
    expect(applied[0]).toBe(readFile(ov.tree('c'), 'app.txt'));
    expect(applied[0]).toContain('parent 5\n');
    expect(applied[0]).toContain('child 35, not committed\n');
    expect(applied[1]).toContain('parent 5\n');
    expect(applied[1]).toContain('child 30\n');
    expect(applied[1]).not.toContain('child 35');
  });

  it('a subscriber that stops reading is cut off; the filesystem goes on', async () => {
    const { ov } = await openOverlay({});
    opened.push(ov);
    ov.createAgent('a', null);
    const server = new ApiServer({ overlay: ov } as ApiContext, pino({ level: 'silent' }));
    servers.push(server);
    const socket = path.join(tempDir(), 'api.sock');
    await server.listen(socket);
    const ws = new WebSocket(`ws+unix://${socket}`);
    await new Promise((r) => ws.once('open', r));
    const closed = new Promise<number>((r) => ws.once('close', (code) => r(code)));
    ws.send(JSON.stringify({ id: 1, method: 'events.follow', params: {} }));
    await new Promise((r) => ws.once('message', r));
    // Stop reading: the kernel's buffers fill, then the server's.
    (ws as unknown as { _socket: { pause(): void } })._socket.pause();
    const big = text(1500); // ~16 KiB of text: its content travels in each event
    let written = 0;
    const start = Date.now();
    for (let round = 0; round < 200 && written < 3000; round++) {
      for (let k = 0; k < 10; k++, written++) writeFile(ov.tree('a'), `f${written % 50}.txt`, `${written}\n${big}`);
      await new Promise((r) => setImmediate(r)); // let the stream run
    }
    expect(written).toBe(2000);
    expect(readFile(ov.tree('a'), 'f49.txt')).toBe(`1999\n${big}`);
    (ws as unknown as { _socket: { resume(): void } })._socket.resume();
    expect(await closed).toBe(1013);
    expect(Date.now() - start).toBeLessThan(30_000);
  });
});
