/**
 * One commit touching 100 files cascading through a tree of 100 agents
 * (depth 3: a root, 9 children, 90 grandchildren), each agent with 10 of
 * those files changed on other lines, so every merge is a real, clean
 * three-way merge. Core only (no FUSE): this is the cascade's own cost.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/cascade.js [--runs N]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Cascade } from '../src/cascade/cascade.js';
import { Overlay } from '../src/overlay/overlay.js';
import { writeFile } from '../test/helpers/core.js';

const FILES = 100;
const LINES = 200;
const runsAt = process.argv.indexOf('--runs');
const runs = runsAt < 0 ? 5 : Number(process.argv[runsAt + 1]);
if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs takes a whole number above 0');

const source = (f: number, edits: Record<number, string> = {}) =>
  `${Array.from({ length: LINES }, (_, i) => edits[i] ?? `export const v${f}_${i} = ${i}; // file ${f} line ${i}`).join('\n')}\n`;

async function once(): Promise<{ ms: number; rebased: number; conflicts: number }> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'cowfs-bench-cascade-'));
  try {
    const ws = path.join(root, 'ws');
    fs.mkdirSync(path.join(ws, 'src'), { recursive: true });
    for (let f = 0; f < FILES; f++) fs.writeFileSync(path.join(ws, 'src', `f${f}.ts`), source(f));
    const ov = await Overlay.open({ workspace: ws });
    try {
      const cascade = new Cascade(ov);
      ov.createAgent('root', null);
      const agents: string[] = [];
      for (let i = 0; i < 9; i++) {
        ov.createAgent(`c${i}`, 'root');
        agents.push(`c${i}`);
        for (let j = 0; j < 10; j++) { ov.createAgent(`c${i}-${j}`, `c${i}`); agents.push(`c${i}-${j}`); }
      }
      // Each agent changes 10 of the files, far from the root's lines, and commits.
      agents.forEach((a, k) => {
        for (let j = 0; j < 10; j++) {
          const f = (k * 7 + j * 11) % FILES;
          writeFile(ov.tree(a), `src/f${f}.ts`, source(f, { [100 + (k % 50)]: `export const mine = '${a}';` }));
        }
      });
      // Children commit first so each level's head carries its own changes.
      for (const a of agents.filter((x) => x.includes('-'))) ov.commit(a, 'own');
      for (const a of agents.filter((x) => !x.includes('-'))) { ov.commit(a, 'own'); cascade.afterCommitOf(a); }
      // The measured step: the root's commit touching all 100 files, and its cascade.
      for (let f = 0; f < FILES; f++) writeFile(ov.tree('root'), `src/f${f}.ts`, source(f, { 5: `export const root = 'changed ${f}';` }));
      const t0 = process.hrtime.bigint();
      ov.commit('root', 'touch 100 files');
      const report = cascade.afterCommitOf('root');
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      return { ms, rebased: report.rebased.length, conflicts: report.conflicted.length };
    } finally {
      await ov.close();
    }
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}

const results: { ms: number; rebased: number; conflicts: number }[] = [];
for (let i = 0; i < runs; i++) results.push(await once());
const ms = results.map((r) => r.ms).sort((a, b) => a - b);
const median = ms[Math.floor(ms.length / 2)]!;
console.log(`cowfs cascade benchmark — ${new Date().toISOString()}, load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
console.log('| workload | runs | median | min | max | agents rebased | conflicts | target |');
console.log('|---|--:|--:|--:|--:|--:|--:|---|');
console.log(`| commit of 100 files cascading through 100 agents (depth 3, 10 changed files each) | ${runs} | ${median.toFixed(0)} ms | ${ms[0]!.toFixed(0)} ms | ${ms.at(-1)!.toFixed(0)} ms | ${results[0]!.rebased} | ${results[0]!.conflicts} | < 1 s ${median < 1000 ? 'ok' : 'MISSED'} |`);
