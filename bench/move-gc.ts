/**
 * Moving an agent and giving disk back (issue 9, items 4 and 5): export
 * and import of an agent with 1,000 changed files on the core, beside `tar`
 * of the same bytes as a yardstick, then the same through two daemons and
 * the CLI, and gc over 100,000 blobs (half of them only a removed agent
 * used).
 *
 *   npx tsc -p tsconfig.json && node dist/bench/move-gc.js [--files N] [--blobs N]
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { collectGarbage } from '../src/overlay/gc.js';
import { Overlay } from '../src/overlay/overlay.js';
import { exportAgent } from '../src/transfer/export.js';
import { importBundle } from '../src/transfer/import.js';
import { removeTempDirs, tempDir, writeFile } from '../test/helpers/core.js';
import { cleanupAll, installHandlers, setMountRoot } from './lib/cleanup.js';
import { CLI, CowfsDaemon } from './lib/cowfs.js';
import { q, sh, timed } from './lib/sh.js';

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const FILES = arg('--files', 1000);
const BLOBS = arg('--blobs', 100_000);

/** A source-like file of about `size` bytes, different for every (file, version). */
function content(f: number, version: number, size: number): Buffer {
  const line = (i: number) => `export const v${f}_${i} = ${(i * 7919 + f * 31 + version) % 100003}; // file ${f} line ${i} v${version}\n`;
  let out = '';
  for (let i = 0; out.length < size; i++) out += line(i);
  return Buffer.from(out);
}

/** File sizes of a source tree: mostly small, a few over the inline limit. */
const sizeOf = (f: number) => (f % 50 === 0 ? 200_000 : 2_000 + (f * 977) % 14_000);

const ms = (t0: number) => performance.now() - t0;
const mbps = (bytes: number, t: number) => (bytes / 1e6 / (t / 1000)).toFixed(0);

async function transfer(): Promise<string[]> {
  const make = () => {
    const ws = tempDir('cowfs-bench-ws-');
    for (let f = 0; f < FILES; f++) {
      fs.mkdirSync(path.join(ws, `src/m${f % 20}`), { recursive: true });
      fs.writeFileSync(path.join(ws, `src/m${f % 20}/f${f}.ts`), content(f, 0, sizeOf(f)));
    }
    return ws;
  };
  const a = await Overlay.open({ workspace: make() });
  const b = await Overlay.open({ workspace: make() });
  const rows: string[] = [];
  try {
    a.createAgent('agent', null);
    const tree = a.tree('agent');
    let bytes = 0;
    const plain = tempDir('cowfs-bench-plain-');
    for (let f = 0; f < FILES; f++) {
      const data = content(f, 1, sizeOf(f));
      bytes += data.length;
      writeFile(tree, `src/m${f % 20}/f${f}.ts`, data);
      fs.mkdirSync(path.join(plain, `m${f % 20}`), { recursive: true });
      fs.writeFileSync(path.join(plain, `m${f % 20}/f${f}.ts`), data);
    }
    a.commit('agent', 'change every file');
    const out = path.join(tempDir('cowfs-bench-bundle-'), 'agent.bundle');
    let t0 = performance.now();
    const ex = await exportAgent(a, 'agent', out, new Set());
    const tExport = ms(t0);
    t0 = performance.now();
    const im = await importBundle(b, out, {});
    const tImport = ms(t0);
    const inc = path.join(path.dirname(out), 'inc.bundle');
    t0 = performance.now();
    const exInc = await exportAgent(a, 'agent', inc, new Set(b.blobs.ids()));
    const tInc = ms(t0);
    const tarFile = path.join(path.dirname(out), 'plain.tar');
    t0 = performance.now();
    execFileSync('tar', ['cf', tarFile, '-C', plain, '.']);
    const tTar = ms(t0);
    const untar = tempDir('cowfs-bench-untar-');
    t0 = performance.now();
    execFileSync('tar', ['xf', tarFile, '-C', untar]);
    const tUntar = ms(t0);
    const mb = (n: number) => (n / 1e6).toFixed(1);
    rows.push(`| export, ${FILES} changed files (${ex.included} blobs incl. merge bases) | ${mb(ex.bytes)} MB | ${tExport.toFixed(0)} ms | ${mbps(ex.bytes, tExport)} MB/s | tar cf of the same ${FILES} files (${mb(bytes)} MB): ${tTar.toFixed(0)} ms, ×${(tExport / tTar).toFixed(1)} |`);
    rows.push(`| import of that bundle into another store (checksum, every blob hashed, one transaction) | ${mb(im.bytes)} MB | ${tImport.toFixed(0)} ms | ${mbps(im.bytes, tImport)} MB/s | tar xf: ${tUntar.toFixed(0)} ms, ×${(tImport / tUntar).toFixed(1)} |`);
    rows.push(`| export with the receiver's have-manifest (it holds everything) | ${(exInc.bytes / 1e3).toFixed(0)} kB | ${tInc.toFixed(0)} ms | | ${(ex.bytes / exInc.bytes).toFixed(0)}× smaller than the full bundle |`);
  } finally {
    await a.close();
    await b.close();
  }
  return rows;
}

/**
 * The same move as a user makes it: two daemons over two copies of the
 * workspace, 1,000 files changed through the sender's mount, then `cowfs
 * export` and `cowfs import` timed in bash (starting node included).
 */
async function throughDaemons(): Promise<string[]> {
  const run = tempDir('cowfs-bench-daemons-');
  setMountRoot(run);
  const daemons = ['a', 'b'].map((m) => {
    const ws = path.join(run, `ws-${m}`);
    for (let f = 0; f < FILES; f++) {
      fs.mkdirSync(path.join(ws, `src/m${f % 20}`), { recursive: true });
      fs.writeFileSync(path.join(ws, `src/m${f % 20}/f${f}.ts`), content(f, 0, sizeOf(f)));
    }
    return new CowfsDaemon(ws, path.join(run, `state-${m}`), path.join(run, `daemon-${m}.log`));
  });
  const [a, b] = daemons as [CowfsDaemon, CowfsDaemon];
  try {
    await a.start();
    await b.start();
    const mnt = path.join(run, 'mnt');
    await a.mount('agent', mnt);
    // Every file rewritten through the mount by sed, as an agent's tool would.
    await sh("find src -name '*.ts' -print0 | xargs -0 sed -i 's/ v0$/ v1/'", { cwd: mnt });
    const cli = (d: CowfsDaemon, args: string) => `${q(process.execPath)} ${q(CLI)} --state-dir ${q(d.stateDir)} ${args} --json`;
    const bundle = path.join(run, 'agent.bundle');
    const ex = await timed(cli(a, `export agent --out ${q(bundle)}`), { keepStdout: true });
    const im = await timed(cli(b, `import ${q(bundle)}`), { keepStdout: true });
    const status = await timed(cli(b, 'status'), { keepStdout: true });
    const bytes = fs.statSync(bundle).size;
    const exported = JSON.parse(ex.stdout) as { included: number; ms: number };
    const imported = JSON.parse(im.stdout) as { ms: number };
    return [
      `| \`cowfs export\` through the daemon, ${FILES} files changed by sed in the mount (${exported.included} blobs) | ${(bytes / 1e6).toFixed(1)} MB | ${(ex.seconds * 1000).toFixed(0)} ms | ${mbps(bytes, ex.seconds * 1000)} MB/s | in the daemon ${exported.ms} ms; \`cowfs status\` (node start, one request) takes ${(status.seconds * 1000).toFixed(0)} ms |`,
      `| \`cowfs import\` into a second daemon | ${(bytes / 1e6).toFixed(1)} MB | ${(im.seconds * 1000).toFixed(0)} ms | ${mbps(bytes, im.seconds * 1000)} MB/s | in the daemon ${imported.ms} ms |`,
    ];
  } finally {
    await a.stop();
    await b.stop();
  }
}

async function gc(): Promise<string[]> {
  const ov = await Overlay.open({ workspace: tempDir('cowfs-bench-gcws-') });
  const rows: string[] = [];
  try {
    const half = BLOBS / 2;
    let t0 = performance.now();
    for (const name of ['live', 'dead']) {
      ov.createAgent(name, null);
      const tree = ov.tree(name);
      for (let i = 0; i < half; i++) {
        if (i % 1000 === 0) tree.mkdir(`d${i / 1000}`, 0o755, 0, 0);
        writeFile(tree, `d${Math.floor(i / 1000)}/f${i}`, Buffer.from(`${name} ${i} ${'x'.repeat(200 + (i % 300))}\n`));
      }
      ov.commit(name, 'many files');
    }
    const tFill = ms(t0);
    ov.removeAgent('dead');
    const held = [...ov.blobs.ids()].length;
    t0 = performance.now();
    const dry = await collectGarbage(ov, { dryRun: true, keepRemovedMs: 0 });
    const tDry = ms(t0);
    t0 = performance.now();
    const r = await collectGarbage(ov, { dryRun: false, keepRemovedMs: 0 });
    const tGc = ms(t0);
    t0 = performance.now();
    const again = await collectGarbage(ov, { dryRun: false, keepRemovedMs: 0 });
    const tAgain = ms(t0);
    rows.push(`| gc --dry-run over ${held.toLocaleString('en')} blobs, ${ov.log.head.toLocaleString('en')} events | ${dry.freedBlobs.toLocaleString('en')} would go | ${tDry.toFixed(0)} ms | ${(held / (tDry / 1000)).toFixed(0)} blobs/s | filling the store took ${(tFill / 1000).toFixed(1)} s |`);
    rows.push(`| gc, a removed agent's ${r.freedBlobs.toLocaleString('en')} blobs freed (${(r.freedBytes / 1e6).toFixed(1)} MB) | | ${tGc.toFixed(0)} ms | ${(held / (tGc / 1000)).toFixed(0)} blobs/s | |`);
    rows.push(`| gc again, nothing to free (${again.blobs.toLocaleString('en')} blobs) | | ${tAgain.toFixed(0)} ms | ${(again.blobs / (tAgain / 1000)).toFixed(0)} blobs/s | |`);
  } finally {
    await ov.close();
  }
  return rows;
}

installHandlers();
try {
  console.log(`cowfs move-and-gc benchmark — ${new Date().toISOString()}, load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  console.log('| workload | size | time | rate | beside |');
  console.log('|---|--:|--:|--:|---|');
  for (const row of [...await transfer(), ...await throughDaemons(), ...await gc()]) console.log(row);
} finally {
  await cleanupAll();
  removeTempDirs();
}
