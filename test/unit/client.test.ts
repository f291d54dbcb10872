import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { Client } from '../../src/cli/client.js';

/** A fake daemon on a unix socket: answers `big` with more than a WebSocket message may carry (100 MiB), anything else with a close. */
describe('the CLI client when the daemon cannot answer', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cowfs-client-'));
  const socket = path.join(dir, 'daemon.sock');
  const server = http.createServer();
  const wss = new WebSocketServer({ server });

  beforeAll(async () => {
    wss.on('connection', (ws) => ws.on('message', (data) => {
      const { id, method } = JSON.parse(String(data)) as { id: number; method: string };
      if (method === 'big') ws.send(JSON.stringify({ id, result: 'x'.repeat(101 * 1024 * 1024) }));
      else ws.close();
    }));
    await new Promise<void>((resolve) => server.listen(socket, resolve));
  });

  afterAll(async () => {
    for (const ws of wss.clients) ws.terminate();
    await new Promise<void>((resolve) => wss.close(() => server.close(() => resolve())));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('an answer too large for one message says so, not that the daemon went away', async () => {
    const client = await Client.connect({ socket });
    await expect(client.call('big')).rejects.toMatchObject({ code: 'too_large', message: expect.stringMatching(/answer is larger than 100 MiB.*--stat/) });
  }, 60_000);

  it('a connection the daemon closes is reported as such', async () => {
    const client = await Client.connect({ socket });
    await expect(client.call('other')).rejects.toMatchObject({ code: 'daemon_down', message: 'the cowfs daemon closed the connection' });
  });
});
