/**
 * `cowfs land` of 1,000 files into the workspace, core only (no daemon, no
 * FUSE): planning (a three-way merge per path against the disk), the
 * journal, temporary files and renames, and the agent settling onto the
 * result. Beside it, in the same run: writing the same files natively
 * (temporary name + rename, the floor for a crash-safe write), and `git
 * apply` of the agent's `cowfs diff` patch.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/land.js [--runs N]
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Cascade } from '../src/cascade/cascade.js';
import { agentDiff } from '../src/daemon/agent-diff.js';
import { land } from '../src/land/land.js';
import { O_CREAT, O_TRUNC, O_WRONLY, type TreeOps } from '../src/overlay/contract.js';
import { Overlay } from '../src/overlay/overlay.js';
import { fmtRatio, mdTable, median } from './lib/stats.js';

const FILES = 1000;
const LINES = 100;
const runs = Number(process.argv[process.argv.indexOf('--runs') + 1] || 5);

const source = (f: number, edits: Record<number, string> = {}) =>
  `${Array.from({ length: LINES }, (_, i) => edits[i] ?? `export const v${f}_${i} = ${i}; // file ${f} line ${i}`).join('\n')}\n`;
const rel = (f: number) => `src/d${f % 10}/f${f}.ts`;

function writeFile(tree: TreeOps, p: string, text: string): void {
  const buf = Buffer.from(text);
  const fh = tree.create(p, 0o644, O_WRONLY | O_CREAT | O_TRUNC, 0, 0);
  tree.write(fh, buf, buf.length, 0);
  tree.release(fh);
}

function ms(t0: bigint): number {
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

/** A workspace; with `existing`, the 1,000 files are already there (the agent modifies them). */
function workspace(root: string, existing: boolean): string {
  const ws = path.join(root, 'ws');
  for (let d = 0; d < 10; d++) fs.mkdirSync(path.join(ws, 'src', `d${d}`), { recursive: true });
  if (existing) for (let f = 0; f < FILES; f++) fs.writeFileSync(path.join(ws, rel(f)), source(f));
  return ws;
}

interface Sample { land: number; native: number; diff: number; gitApply: number }

async function once(kind: 'new' | 'merge'): Promise<Sample> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'cowfs-bench-land-'));
  try {
    const ws = workspace(root, kind === 'merge');
    const ov = await Overlay.open({ workspace: ws });
    try {
      ov.createAgent('a', null);
      const tree = ov.tree('a');
      for (let f = 0; f < FILES; f++) writeFile(tree, rel(f), source(f, { 10: `export const agent = ${f};` }));
      ov.commit('a', '1,000 files');
      if (kind === 'merge') {
        // The workspace moved on meanwhile: another line of every file, so each path is a real three-way merge.
        for (let f = 0; f < FILES; f++) fs.writeFileSync(path.join(ws, rel(f)), source(f, { 90: `export const human = ${f};` }));
      }
      let t0 = process.hrtime.bigint();
      const patch = agentDiff(ov, 'a', { patch: true }).patch;
      const diff = ms(t0);
      const copy = path.join(root, 'copy');
      fs.cpSync(ws, copy, { recursive: true, filter: (src) => !src.includes('/.cowfs') });
      t0 = process.hrtime.bigint();
      let gitApply = NaN;
      if (kind === 'new') {
        execFileSync('git', ['apply', '-'], { cwd: copy, input: Buffer.from(patch, 'latin1') });
        gitApply = ms(t0);
      }
      t0 = process.hrtime.bigint();
      const r = await land(ov, new Cascade(ov), 'a', {});
      const landMs = ms(t0);
      if (r.changed.length !== FILES) throw new Error(`landed ${r.changed.length} paths, expected ${FILES}`);
      if (!fs.readFileSync(path.join(ws, rel(999)), 'utf8').includes('agent = 999')) throw new Error('landing lost a file');
      // The floor: the same files written natively, each to a temporary name and renamed into place.
      const native = path.join(root, 'native');
      for (let d = 0; d < 10; d++) fs.mkdirSync(path.join(native, 'src', `d${d}`), { recursive: true });
      t0 = process.hrtime.bigint();
      for (let f = 0; f < FILES; f++) {
        const dest = path.join(native, rel(f));
        fs.writeFileSync(`${dest}.tmp`, source(f, { 10: `export const agent = ${f};` }));
        fs.renameSync(`${dest}.tmp`, dest);
      }
      return { land: landMs, native: ms(t0), diff, gitApply };
    } finally {
      await ov.close();
    }
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}

const samples: Record<'new' | 'merge', Sample[]> = { new: [], merge: [] };
for (let i = 0; i < runs; i++) for (const kind of ['new', 'merge'] as const) samples[kind].push(await once(kind));

const f = (x: number) => (Number.isFinite(x) ? `${x.toFixed(0)} ms` : '—');
const rows = [['workload', 'runs', 'cowfs land, median', 'files/s', 'native temp+rename', 'land / native', 'cowfs diff', 'git apply of that diff']];
for (const kind of ['new', 'merge'] as const) {
  const s = samples[kind];
  const m = (k: keyof Sample) => median(s.map((x) => x[k]));
  rows.push([
    kind === 'new' ? '1,000 new files (4 KiB) into the workspace' : '1,000 changed files, workspace changed meanwhile (1,000 three-way merges)',
    String(runs), f(m('land')), (FILES / (m('land') / 1000)).toFixed(0), f(m('native')), fmtRatio(m('land') / m('native')), f(m('diff')), f(m('gitApply')),
  ]);
}
console.log(`cowfs land benchmark — ${new Date().toISOString()}, load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
console.log(mdTable(rows, [false, true, true, true, true, true, true, true]));
