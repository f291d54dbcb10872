import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { open } from 'lmdb';

/**
 * lmdb reads its file through a memory map and trusts it: a store whose
 * meta pages are zeroed kills the process that opens it with SIGSEGV, one
 * cut short with SIGBUS, before any error can be thrown (the daemon died
 * without a word). So the daemon first opens the store in a child process
 * that reads what an open reads (the meta pages, every database's root, its
 * first and last entries), and refuses to start, saying so, if that one dies.
 */
export function checkStore(storeDir: string): void {
  if (!fs.existsSync(path.join(storeDir, 'data.mdb'))) return;
  const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), storeDir], { encoding: 'utf8', timeout: 120_000 });
  if (r.status === 0) return;
  // Not every failure is a corrupt store: the check itself may not have run, or run out of time.
  if (r.error) throw new Error(`could not check the cowfs store in ${storeDir}: ${r.error.message}`);
  const error = r.stderr?.split('\n').find((l) => /^\w*Error\b/.test(l));
  const how = r.signal === 'SIGTERM' ? 'reading it took over 2 minutes'
    : r.signal ? `reading it killed the process (${r.signal}: a damaged file, or one that cannot be mapped)`
    : error ?? `the check exited with ${r.status}`;
  throw new Error(`the cowfs store in ${storeDir} may be corrupt: ${how}. Keep a copy of the state directory; `
    + 'moving it aside starts afresh (without the agents)');
}

function probe(storeDir: string): void {
  const root = open({ path: storeDir, readOnly: true, maxDbs: 16, mapSize: 64 * 1024 ** 3 });
  // Listed first: opening a database while the root's cursor is open invalidates it.
  for (const name of [...root.getKeys()]) {
    if (typeof name !== 'string') continue;
    const db = root.openDB({ name, encoding: 'binary' });
    for (const reverse of [false, true]) for (const e of db.getRange({ limit: 1, reverse })) void e.value;
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) probe(process.argv[2]!);
