/**
 * Time of one clean three-way merge: our engine, unmodified node-diff3
 * (`diff3Merge`) and `git merge-file --diff3` (spawned: its time includes
 * process start), on a 1,000-line and a 6,000-line file in which most lines
 * recur many times (blank lines, braces). Also the LCS alone, node-diff3's
 * against ours. Run: npx tsc -p tsconfig.json && node dist/bench/merge.js
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LCS, diff3Merge } from 'node-diff3';
import { lcs, mergeText, splitLines } from '../src/merge/index.js';
// The same seeded generator as the tests, so every run merges the same files.
import { prng } from '../test/helpers/random.js';


/**
 * TypeScript-like source in which 12 of every 16 lines (blank lines,
 * braces, `continue;`...) recur in every function, the pattern that makes
 * node-diff3's LCS slow.
 */
function sourceFile(lineCount: number): string[] {
  const out: string[] = [];
  for (let k = 0; out.length < lineCount; k++) {
    out.push(
      `export function handler${k}(input: Input): number {`,
      `  const value${k} = compute(input, ${k});`,
      `  if (value${k} > LIMIT) {`,
      `    return value${k};`,
      '  }',
      '',
      '  for (const item of input.items) {',
      '    if (!item) {',
      '      continue;',
      '    }',
      '    total += item.size;',
      '  }',
      '',
      '  return total;',
      '}',
      '',
    );
  }
  return out.slice(0, lineCount);
}

/** base, and two sides editing separate halves (a clean merge). */
function clean3(base: string[], edits: number, seed: number): [string, string, string] {
  const rand = prng(seed);
  const half = base.length >> 1;
  const ours = base.slice();
  const theirs = base.slice();
  for (let k = 0; k < edits; k++) {
    ours[Math.floor(rand() * (half - 1))] = `  // ours ${k}`;
    theirs[half + 1 + Math.floor(rand() * (half - 2))] = `  // theirs ${k}`;
  }
  ours.splice(10, 0, '  const added = true;', '');
  theirs.push('', 'export const end = 1;');
  return [base, ours, theirs].map((ls) => ls.join('\n') + '\n') as [string, string, string];
}

interface Stats {
  runs: number;
  median: number;
  p99: number;
  max: number;
}

/**
 * Times fn until `runs` runs or `budgetMs` have passed (at least 3 runs),
 * after up to 20 warm-up runs or 1 s of them (so the JIT has compiled it).
 */
function time(fn: () => unknown, runs: number, budgetMs: number): Stats {
  const warm = performance.now() + 1000;
  for (let k = 0; k < 20 && performance.now() < warm; k++) fn();
  const ms: number[] = [];
  const deadline = performance.now() + budgetMs;
  while (ms.length < runs && (ms.length < 3 || performance.now() < deadline)) {
    const t0 = performance.now();
    fn();
    ms.push(performance.now() - t0);
  }
  ms.sort((x, y) => x - y);
  return {
    runs: ms.length,
    median: ms[Math.floor((ms.length - 1) / 2)],
    p99: ms[Math.ceil(ms.length * 0.99) - 1],
    max: ms[ms.length - 1],
  };
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cowfs-bench-merge-'));
function gitMergeFile(base: string, ours: string, theirs: string): string {
  const files = [ours, base, theirs].map((text, k) => {
    const file = path.join(tmp, String(k));
    fs.writeFileSync(file, text);
    return file;
  });
  const args = ['merge-file', '--diff3', '-p', '-L', 'ours', '-L', 'base', '-L', 'theirs', ...files];
  return execFileSync('git', args, { cwd: tmp, encoding: 'utf8' });
}

const cases = [
  { name: '1,000 lines', base: sourceFile(1000), edits: 5 },
  { name: '6,000 lines', base: sourceFile(6000), edits: 20 },
];

const rows: string[][] = [['file', 'engine', 'runs', 'median ms', 'p99 ms', 'max ms']];
const fmt = (x: number) => (x < 10 ? x.toFixed(3) : x < 1000 ? x.toFixed(1) : x.toFixed(0));
const add = (file: string, engine: string, s: Stats) =>
  rows.push([file, engine, String(s.runs), fmt(s.median), fmt(s.p99), fmt(s.max)]);

for (const c of cases) {
  const [base, ours, theirs] = clean3(c.base, c.edits, 42);
  const [o, a, b] = [base, ours, theirs].map(splitLines);
  const merged = mergeText(base, ours, theirs);
  if (!merged.clean || merged.text !== gitMergeFile(base, ours, theirs)) {
    throw new Error(`${c.name}: our merge differs from git merge-file`);
  }
  add(c.name, 'cowfs mergeText', time(() => mergeText(base, ours, theirs), 500, 10_000));
  add(c.name, 'node-diff3 diff3Merge', time(() => diff3Merge(a, o, b), 200, 20_000));
  add(c.name, 'git merge-file (spawn)', time(() => gitMergeFile(base, ours, theirs), 100, 10_000));
  add(c.name, 'LCS: cowfs lcs', time(() => lcs(o, a), 500, 10_000));
  add(c.name, 'LCS: node-diff3 LCS', time(() => LCS(o, a), 200, 20_000));
}
fs.rmSync(tmp, { recursive: true, force: true });

const widths = rows[0].map((_, k) => Math.max(...rows.map((r) => r[k].length)));
const line = (r: string[]) => `| ${r.map((cell, k) => (k < 2 ? cell.padEnd(widths[k]) : cell.padStart(widths[k]))).join(' | ')} |`;
console.log(line(rows[0]));
console.log(`|${widths.map((w, k) => (k < 2 ? '-'.repeat(w + 2) : '-'.repeat(w + 1) + ':')).join('|')}|`);
for (const r of rows.slice(1)) console.log(line(r));
console.log(`\nnode ${process.version}, ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}; both merges clean and identical to git's output.`);
