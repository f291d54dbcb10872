/**
 * The core's first benchmark (issue 2): event appends, path resolution at
 * depth 1 and 5, blob put/get, replay of 100,000 events, and the store's size
 * for 100 agents over a 10,000-file workspace. No FUSE: the overlay API only.
 *
 *   npm run bench:core                      # everything
 *   node dist/bench/core.js resolve replay  # some sections (appends, resolve, blobs, replay, size)
 *
 * Everything lives in temporary directories under os.tmpdir(), removed at the end.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { O_RDWR, type TreeOps } from '../src/overlay/contract.js';
import { Overlay } from '../src/overlay/overlay.js';
import { removeTempDirs, tempDir, writeFile } from '../test/helpers/core.js';

// ---- helpers ----------------------------------------------------------------


const now = () => performance.now();

/** Runs `fn` (which does `n` operations per call) until at least `minMs` passed; returns operations per second. */
function rate(fn: () => number, minMs = 700): { perSec: number; ops: number; ms: number } {
  // Warm-up, so the JIT has optimized the path before it is timed.
  for (const w0 = now(); now() - w0 < 150;) fn();
  let ops = 0;
  const t0 = now();
  let t = t0;
  while (t - t0 < minMs) {
    ops += fn();
    t = now();
  }
  return { perSec: (ops * 1000) / (t - t0), ops, ms: t - t0 };
}

function overwrite(tree: TreeOps, p: string, data: Buffer, offset: number): void {
  const fh = tree.open(p, O_RDWR);
  try {
    tree.write(fh, data, data.length, offset);
  } finally {
    tree.release(fh);
  }
}

/** mkdir -p of a real directory and its files: `files(i)` gives path and content of file i. */
function makeWorkspace(count: number, file: (i: number) => [string, string | Buffer]): string {
  const root = tempDir('cowfs-bench-ws-');
  const made = new Set<string>();
  for (let i = 0; i < count; i++) {
    const [rel, content] = file(i);
    const abs = path.join(root, rel);
    const dir = path.dirname(abs);
    if (!made.has(dir)) {
      fs.mkdirSync(dir, { recursive: true });
      made.add(dir);
    }
    fs.writeFileSync(abs, content);
  }
  return root;
}

async function openOverlay(ws: string): Promise<Overlay> {
  // The state directory outside the workspace, as `--state` would put it.
  return Overlay.open({ workspace: ws, stateDir: path.join(tempDir('cowfs-bench-state-'), 'state') });
}

/** A plausible source file of about `size` bytes. */
function sourceText(i: number, size = 2048): string {
  const line = `export const value${i} = compute(${i}, "some text to make a line of code");\n`;
  return `// file ${i}\n${line.repeat(Math.ceil(size / line.length))}`.slice(0, size);
}

function du(dir: string): { kib: number; apparentKib: number } {
  const kib = Number(execFileSync('du', ['-sk', dir]).toString().split(/\s/)[0]);
  const apparentKib = Number(execFileSync('du', ['-sk', '--apparent-size', dir]).toString().split(/\s/)[0]);
  return { kib, apparentKib };
}

// ---- the table ----------------------------------------------------------------

interface Row {
  section: string;
  metric: string;
  value: number;
  unit: string;
  target?: { min?: number; max?: number };
  note?: string;
}
const rows: Row[] = [];

function row(section: string, metric: string, value: number, unit: string, target?: Row['target'], note?: string): void {
  rows.push({ section, metric, value, unit, target, note });
  const r = rows[rows.length - 1]!;
  console.error(`  ${metric}: ${fmt(r.value)} ${r.unit}${note ? ` (${note})` : ''}`);
}

function fmt(n: number): string {
  if (n >= 100) return Math.round(n).toLocaleString('en-US');
  if (n >= 10) return n.toFixed(1);
  return n.toFixed(2);
}

function printTable(): void {
  const status = (r: Row) => {
    if (!r.target) return '';
    const ok = (r.target.min === undefined || r.value >= r.target.min) && (r.target.max === undefined || r.value <= r.target.max);
    const t = r.target.min !== undefined ? `≥ ${fmt(r.target.min)}` : `< ${fmt(r.target.max!)}`;
    return `${t} ${ok ? 'ok' : 'MISSED'}`;
  };
  const table = rows.map((r) => [r.section, r.metric, fmt(r.value), r.unit, status(r), r.note ?? '']);
  const head = ['section', 'metric', 'value', 'unit', 'target', 'note'];
  const widths = head.map((h, i) => Math.max(h.length, ...table.map((t) => t[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => (i === 2 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(' | ')} |`;
  console.log(line(head));
  console.log(`|${widths.map((w, i) => (i === 2 ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`);
  for (const t of table) console.log(line(t));
}

// ---- sections -------------------------------------------------------------------

async function benchAppends(): Promise<void> {
  console.error('event appends');
  const ws = makeWorkspace(1, () => ['file.txt', 'x']);
  const ov = await openOverlay(ws);
  try {
    ov.createAgent('a', null);
    const t = ov.tree('a');
    // One operation = one store transaction = one event.
    let n = 0;
    const mk = rate(() => {
      for (let i = 0; i < 500; i++) t.mkdir(`d${n++}`, 0o755, 0, 0);
      return 500;
    });
    row('appends', 'mkdir (1 event, 1 txn each)', mk.perSec, 'events/s', { min: 50_000 });
    let m = 0;
    const ut = rate(() => {
      for (let i = 0; i < 500; i++) t.utimens('file.txt', 0, ++m);
      return 500;
    });
    row('appends', 'utimens (1 event, 1 txn each)', ut.perSec, 'events/s', { min: 50_000 });
    // A small file written whole: create, write, release (one put event).
    t.mkdir('new', 0o755, 0, 0);
    let w = 0;
    const wn = rate(() => {
      for (let i = 0; i < 100; i++) writeFile(t, `new/w${w++}`, `content ${w}`);
      return 100;
    }, 400);
    row('appends', 'write a new small file (put)', wn.perSec, 'events/s', undefined, 'scratch file + blob + event');
    for (let i = 0; i < 200; i++) writeFile(t, `old${i}`, 'first');
    const wr = rate(() => {
      for (let i = 0; i < 100; i++) writeFile(t, `old${w++ % 200}`, `content ${w}`);
      return 100;
    }, 400);
    row('appends', 'rewrite an existing small file (O_TRUNC)', wr.perSec, 'events/s', undefined, 'see hot spots: ftruncate');

    const body = { type: 'utimens' as const, path: 'file.txt', mtimeMs: 1 };
    const one = rate(() => {
      for (let i = 0; i < 1000; i++) ov.store.txn(() => ov.log.append('a', body));
      ov.log.publish();
      return 1000;
    });
    row('appends', 'log.append, 1 per txn', one.perSec, 'events/s', { min: 50_000 });
    const batch = rate(() => {
      ov.store.txn(() => {
        for (let i = 0; i < 1000; i++) ov.log.append('a', body);
      });
      ov.log.publish();
      return 1000;
    });
    row('appends', 'log.append, 1,000 per txn', batch.perSec, 'events/s', { min: 50_000 });
  } finally {
    await ov.close();
  }
}

async function benchResolve(): Promise<void> {
  console.error('path resolution');
  const FILES = 2000;
  // src/m<i>/lib/f<j>.ts: 4 components, like most paths in a project.
  const ws = makeWorkspace(FILES, (i) => [`src/m${i % 20}/lib/f${Math.floor(i / 20)}.ts`, sourceText(i, 256)]);
  const ov = await openOverlay(ws);
  try {
    let parent: string | null = null;
    for (let k = 1; k <= 5; k++) {
      const name = `l${k}`;
      ov.createAgent(name, parent);
      const t = ov.tree(name);
      for (const d of [`pkg${k}`, `pkg${k}/src`, `pkg${k}/src/lib`]) t.mkdir(d, 0o755, 0, 0);
      for (let j = 0; j < 200; j++) writeFile(t, `pkg${k}/src/lib/f${j}.ts`, `level ${k} file ${j}`);
      // Each level also changes some workspace files (m1..m5) and deletes one.
      for (let j = 0; j < 20; j++) writeFile(t, `src/m${k}/lib/f${j}.ts`, `changed at level ${k}`);
      t.unlink(`src/m${k}/lib/f99.ts`);
      t.rename(`src/m${k + 10}`, `src/moved${k}`, 0);
      ov.commit(name, `level ${k}`);
      parent = name;
    }
    const cases: [string, string, (j: number) => string][] = [
      ['l1', 'depth 1, own layer', (j) => `pkg1/src/lib/f${j % 200}.ts`],
      ['l1', 'depth 1, from the workspace', (j) => `src/m0/lib/f${j % 100}.ts`],
      ['l5', 'depth 5, deepest (own) layer', (j) => `pkg5/src/lib/f${j % 200}.ts`],
      ['l5', 'depth 5, middle layer (3rd)', (j) => `pkg3/src/lib/f${j % 200}.ts`],
      ['l5', 'depth 5, bottom layer (5th)', (j) => `pkg1/src/lib/f${j % 200}.ts`],
      ['l5', 'depth 5, from the workspace', (j) => `src/m0/lib/f${j % 100}.ts`],
      ['l5', 'depth 5, through a renamed dir', (j) => `src/moved2/lib/f${j % 100}.ts`],
      ['l5', 'depth 5, missing (ENOENT)', (j) => `src/m0/lib/nope${j % 100}.ts`],
    ];
    const lookupAll = (t: TreeOps, paths: string[]) => {
      for (const p of paths) {
        try {
          t.getattr(p);
        } catch {
          // ENOENT, expected for the missing case
        }
      }
      return paths.length;
    };
    // Warm every case up first, so the first one measured is not the one the JIT learns on.
    for (const [agent, , pathOf] of cases) {
      const paths = Array.from({ length: 1000 }, (_, j) => pathOf(j));
      for (const w0 = now(); now() - w0 < 100;) lookupAll(ov.tree(agent), paths);
    }
    for (const [agent, label, pathOf] of cases) {
      const t = ov.tree(agent);
      const paths = Array.from({ length: 1000 }, (_, j) => pathOf(j));
      const missing = label.includes('missing');
      for (const p of paths) {
        // Sanity: each path resolves where it should (or not at all).
        let ok = true;
        try {
          t.getattr(p);
        } catch {
          ok = false;
        }
        if (ok === missing) throw new Error(`bench setup: ${agent}:${p} ${missing ? 'exists' : 'is missing'}`);
      }
      const r = rate(() => lookupAll(t, paths));
      const target = label.startsWith('depth 5') && !missing ? { min: 200_000 } : undefined;
      row('resolve', `getattr, ${label}`, r.perSec, 'lookups/s', target);
    }
    // readdir merges every layer: a directory all five levels changed.
    const t5 = ov.tree('l5');
    const rd = rate(() => {
      for (let k = 1; k <= 5; k++) t5.readdir(`src/m${k}/lib`);
      return 5;
    });
    row('resolve', 'readdir of a 100-entry dir changed by 5 levels', rd.perSec, 'readdirs/s');
  } finally {
    await ov.close();
  }
}

async function benchBlobs(): Promise<void> {
  console.error('blobs');
  const ws = makeWorkspace(1, () => ['x', 'x']);
  const ov = await openOverlay(ws);
  try {
    const blobs = ov.blobs;
    const MiB = 1024 * 1024;
    for (const [label, size, count] of [['4 KiB', 4096, 20_000], ['4 MiB', 4 * MiB, 40]] as const) {
      const base = Buffer.alloc(size);
      for (let i = 0; i < size; i += 4) base.writeUInt32LE((Math.imul(i, 2654435761) >>> 0), i);
      const bufs = Array.from({ length: count }, (_, i) => {
        const b = Buffer.from(base);
        b.writeUInt32LE(i, 0); // distinct contents
        return b;
      });
      const ids: string[] = [];
      let t0 = now();
      for (const b of bufs) ids.push(blobs.put(b));
      let ms = now() - t0;
      row('blobs', `put ${label} (new content)`, (count * size) / MiB / (ms / 1000), 'MB/s', undefined, `${fmt((count * 1000) / ms)} blobs/s`);
      t0 = now();
      for (const b of bufs) blobs.put(b);
      ms = now() - t0;
      row('blobs', `put ${label} (already stored)`, (count * size) / MiB / (ms / 1000), 'MB/s', undefined, 'hash + byte compare');
      t0 = now();
      let total = 0;
      for (let round = 0; round < 3; round++) for (const id of ids) total += blobs.get(id).length;
      ms = now() - t0;
      row('blobs', `get ${label}`, total / MiB / (ms / 1000), 'MB/s');
      // What release() does: a scratch file linked into the store.
      const dir = tempDir('cowfs-bench-scratch-');
      const files = bufs.slice(0, Math.min(count, size > 64 * 1024 ? count : 2000)).map((b, i) => {
        const f = path.join(dir, `s${i}`);
        b.writeUInt32LE(i + 1_000_000, 4);
        fs.writeFileSync(f, b);
        return f;
      });
      t0 = now();
      for (const f of files) blobs.putFile(f, 'link');
      ms = now() - t0;
      row('blobs', `putFile ${label} (link, new)`, (files.length * size) / MiB / (ms / 1000), 'MB/s', undefined, size > 64 * 1024 ? 'hard link' : 'read + inline');
    }
  } finally {
    await ov.close();
  }
}

async function benchReplay(): Promise<void> {
  console.error('replay');
  const ws = makeWorkspace(1000, (i) => [`src/d${i % 50}/f${Math.floor(i / 50)}.ts`, sourceText(i, 512)]);
  const ov = await openOverlay(ws);
  try {
    // 100,000 events through real operations: each round 5 events (put, utimens, chmod, move, delete).
    ov.createAgent('r', null);
    const t = ov.tree('r');
    for (let d = 0; d < 100; d++) t.mkdir(`own${d}`, 0o755, 0, 0);
    const EVENTS = 100_000;
    const t0 = now();
    let i = 0;
    while (ov.log.head < EVENTS) {
      const p = i % 4 === 0 ? `src/d${i % 50}/f${(i >> 2) % 20}.ts` : `own${i % 100}/f${(i >> 2) % 50}`;
      writeFile(t, p, `round ${i % 97}`);
      if (ov.log.head >= EVENTS) break;
      t.utimens(p, 0, i);
      if (ov.log.head >= EVENTS) break;
      t.chmod(p, 0o600);
      if (ov.log.head >= EVENTS) break;
      t.rename(p, `${p}.moved`, 0);
      if (ov.log.head >= EVENTS) break;
      if (i % 3 !== 0) t.unlink(`${p}.moved`);
      i++;
    }
    const buildMs = now() - t0;
    const events = ov.log.head;
    row('replay', `building the log through tree ops (${fmt(events)} events)`, (events * 1000) / buildMs, 'events/s', undefined, `${fmt(buildMs / 1000)} s`);
    const live = [...ov.tree('r').layer.entriesList()].length;
    ov.replay('r'); // warm-up (and JIT)
    const runs: number[] = [];
    for (let k = 0; k < 3; k++) {
      const s = now();
      ov.replay('r');
      runs.push(now() - s);
    }
    const best = Math.min(...runs) / 1000;
    row('replay', `ov.replay of ${fmt(events)} events (best of 3)`, best, 's', { max: 2 }, `${fmt(events / best)} events/s; ${live} entries`);
    const s = now();
    ov.replay('r', Math.floor(events / 2));
    row('replay', `ov.replay to event ${fmt(Math.floor(events / 2))}`, (now() - s) / 1000, 's');

    // The same volume spread over a lineage: 4 ancestors' commits (ops in AGENT_COMMIT_CREATED) + own events.
    let parent = 'r';
    ov.commit('r', 'all of it');
    for (let k = 0; k < 3; k++) {
      const name = `c${k}`;
      ov.createAgent(name, parent);
      const c = ov.tree(name);
      for (let j = 0; j < 2000; j++) c.utimens(`src/d${j % 50}`, 0, j);
      ov.commit(name, `c${k}`);
      parent = name;
    }
    ov.createAgent('leaf', parent);
    const s2 = now();
    ov.replay('leaf');
    row('replay', `ov.replay of a 5-agent lineage (${fmt(ov.log.head)} events in the log)`, (now() - s2) / 1000, 's');
  } finally {
    await ov.close();
  }
}

async function benchSize(): Promise<void> {
  console.error('store size');
  const FILES = 10_000;
  const ws = makeWorkspace(FILES, (i) => [`packages/p${i % 100}/src/file${Math.floor(i / 100)}.ts`, sourceText(i, 1024 + (i % 7) * 512)]);
  const wsSize = du(ws);
  const ov = await openOverlay(ws);
  const stateDir = ov.stateDir;
  let seed = 12345;
  const rand = (n: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed % n;
  };
  const t0 = now();
  let blobCount = 0;
  let blobBytes = 0;
  let events = 0;
  try {
    for (let a = 0; a < 100; a++) {
      const name = `agent${a}`;
      ov.createAgent(name, null);
      const t = ov.tree(name);
      for (let k = 0; k < 10; k++) {
        const i = rand(FILES);
        // A one-line edit in the middle of the file: copy-up (base stored) + the new content.
        overwrite(t, `packages/p${i % 100}/src/file${Math.floor(i / 100)}.ts`, Buffer.from(`// edited by ${name} #${k}\n`), 512);
      }
    }
    for (const { value } of ov.store.dbs.blobMeta.getRange()) {
      blobCount++;
      blobBytes += value.size;
    }
    events = ov.log.head;
  } finally {
    await ov.close();
  }
  const ms = now() - t0;
  const st = du(stateDir);
  const mdb = fs.statSync(path.join(stateDir, 'store', 'data.mdb'));
  row('size', 'workspace: 10,000 files', wsSize.kib / 1024, 'MiB', undefined, `apparent ${fmt(wsSize.apparentKib / 1024)} MiB`);
  row('size', 'state dir after 100 agents × 10 changed files', st.kib / 1024, 'MiB', undefined,
    `apparent ${fmt(st.apparentKib / 1024)} MiB; data.mdb ${fmt(mdb.size / 1024 / 1024)} MiB (${fmt((mdb.blocks * 512) / 1024 / 1024)} allocated)`);
  row('size', 'per agent', st.kib / 100, 'KiB', undefined,
    `${fmt(blobCount)} blobs holding ${fmt(blobBytes / 1024 / 1024)} MiB, ${fmt(events)} events; ${fmt(ms / 1000)} s for the 1,000 edits`);
}

// ---- main ------------------------------------------------------------------------

const SECTIONS: Record<string, () => Promise<void>> = {
  appends: benchAppends,
  resolve: benchResolve,
  blobs: benchBlobs,
  replay: benchReplay,
  size: benchSize,
};

async function main(): Promise<void> {
  const wanted = process.argv.slice(2);
  for (const w of wanted) if (!SECTIONS[w]) throw new Error(`unknown section ${w} (have: ${Object.keys(SECTIONS).join(', ')})`);
  const cpus = os.cpus();
  console.log(`cowfs core benchmark — ${new Date().toISOString()}`);
  console.log(`machine: ${cpus[0]?.model ?? 'unknown cpu'}, ${cpus.length} cores, ${(os.totalmem() / 1024 ** 3).toFixed(1)} GiB RAM, `
    + `${os.type()} ${os.release()}, node ${process.version}, load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  console.log(`temp dir: ${os.tmpdir()}`);
  console.log('');
  const t0 = now();
  try {
    for (const [name, fn] of Object.entries(SECTIONS)) if (wanted.length === 0 || wanted.includes(name)) await fn();
  } finally {
    removeTempDirs();
  }
  printTable();
  console.log(`\n(${((now() - t0) / 1000).toFixed(1)} s)`);
}

main().catch((err) => {
  removeTempDirs();
  console.error(err);
  process.exit(1);
});
