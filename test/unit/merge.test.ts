import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LCS, diff3Merge } from 'node-diff3';
import {
  mergeText,
  mergeFiles,
  isBinary,
  resolveTrivial,
  mapConflict,
  lcs,
  splitLines,
} from '../../src/merge/index.js';
import { compactAlignment } from '../../src/merge/compact.js';
import { internLines, lcsOfIds } from '../../src/merge/lcs.js';
import { prng } from '../helpers/random.js';

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cowfs-merge-'));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** `git merge-file --diff3 -p -L ours -L base -L theirs`: merged text and number of conflicts. */
function gitMergeFile(base: string, ours: string, theirs: string): { text: string; conflicts: number } {
  const [o, b, t] = ['ours', 'base', 'theirs'].map((n) => path.join(tmp, n));
  fs.writeFileSync(o, ours, 'latin1');
  fs.writeFileSync(b, base, 'latin1');
  fs.writeFileSync(t, theirs, 'latin1');
  const args = ['merge-file', '--diff3', '-p', '-L', 'ours', '-L', 'base', '-L', 'theirs', o, b, t];
  try {
    return { text: execFileSync('git', args, { cwd: tmp, encoding: 'latin1' }), conflicts: 0 };
  } catch (e) {
    const err = e as { status?: number; stdout?: string };
    if (typeof err.status === 'number' && err.status > 0 && err.status < 128) {
      return { text: err.stdout ?? '', conflicts: err.status };
    }
    throw e;
  }
}

const lines = (...ls: string[]) => ls.map((l) => l + '\n').join('');

describe('mergeText', () => {
  it('splits lines keeping their terminators', () => {
    expect(splitLines('a\n\nb')).toEqual(['a\n', '\n', 'b']);
    expect(splitLines('')).toEqual([]);
  });

  it('merges edits to different places', () => {
    const base = lines('a', 'b', 'c', 'd', 'e');
    const r = mergeText(base, lines('A', 'b', 'c', 'd', 'e'), lines('a', 'b', 'c', 'd', 'E'));
    expect(r).toEqual({ clean: true, text: lines('A', 'b', 'c', 'd', 'E'), hunks: [], refined: [] });
  });

  it('takes the same change made on both sides once', () => {
    const base = lines('a', 'b', 'c');
    const both = lines('a', 'B', 'c', 'new');
    expect(mergeText(base, both, lines('a', 'B', 'c', 'new'))).toMatchObject({ clean: true, text: both });
    // both add the same block, one side also edits elsewhere
    const r = mergeText(base, lines('x', 'a', 'b', 'c', 'block', '}'), lines('a', 'b', 'c', 'block', '}'));
    expect(r).toMatchObject({ clean: true, text: lines('x', 'a', 'b', 'c', 'block', '}') });
  });

  it('writes diff3 conflict markers and reports the hunk', () => {
    const r = mergeText(lines('a', 'b', 'c'), lines('a', 'ours', 'c'), lines('a', 'theirs', 'c'));
    expect(r.clean).toBe(false);
    expect(r.text).toBe(
      lines('a', '<<<<<<< ours', 'ours', '||||||| base', 'b', '=======', 'theirs', '>>>>>>> theirs', 'c'),
    );
    expect(r.hunks).toEqual([
      {
        line: 2,
        ours: { start: 1, text: 'ours\n' },
        base: { start: 1, text: 'b\n' },
        theirs: { start: 1, text: 'theirs\n' },
      },
    ]);
  });

  it('uses the given labels', () => {
    const r = mergeText('x\n', 'y\n', 'z\n', { labels: { ours: 'child C', base: 'A@h1', theirs: 'A@h2' } });
    expect(r.text).toBe(lines('<<<<<<< child C', 'y', '||||||| A@h1', 'x', '=======', 'z', '>>>>>>> A@h2'));
  });

  it('treats edits to adjacent lines as a conflict, as git does', () => {
    const r = mergeText(lines('a', 'b'), lines('A', 'b'), lines('a', 'B'));
    expect(r.clean).toBe(false);
    expect(r.hunks).toHaveLength(1);
  });

  it('follows git where node-diff3 aligns lines differently', () => {
    // node-diff3 merges this cleanly to "}!\n\n"; git's diff deletes the
    // second blank line, next to theirs' edit of the first, and conflicts.
    const base = lines('', '');
    const ours = lines('');
    const theirs = lines('}!', '');
    const nd3 = diff3Merge(splitLines(ours), splitLines(base), splitLines(theirs));
    expect(nd3).toEqual([{ ok: ['}!\n', '\n'] }]);
    expect(mergeText(base, ours, theirs).clean).toBe(false);
    expect(mergeText(base, ours, theirs).text).toBe(gitMergeFile(base, ours, theirs).text);
  });

  it('handles a missing newline at the end of file like git', () => {
    // ours drops the final newline; theirs edits the top: clean, keeps no newline
    expect(mergeText('a\nb\nc\n', 'a\nb\nc', 'A\nb\nc\n')).toMatchObject({ clean: true, text: 'A\nb\nc' });
    // conflicting last lines without newline: git adds one inside the conflict
    const r = mergeText('a\nb', 'a\nx', 'a\ny');
    expect(r.text).toBe(lines('a', '<<<<<<< ours', 'x', '||||||| base', 'b', '=======', 'y', '>>>>>>> theirs'));
    expect(r.text).toBe(gitMergeFile('a\nb', 'a\nx', 'a\ny').text);
  });

  it('handles empty files', () => {
    expect(mergeText('', '', 'x\n')).toMatchObject({ clean: true, text: 'x\n' });
    expect(mergeText('', 'x\n', 'x\n')).toMatchObject({ clean: true, text: 'x\n' });
    expect(mergeText('x\n', '', 'x\n')).toMatchObject({ clean: true, text: '' });
    const r = mergeText('', 'x\n', 'y\n');
    expect(r.clean).toBe(false);
    expect(r.text).toBe(gitMergeFile('', 'x\n', 'y\n').text);
    expect(mergeText('x\n', '', 'y\n').text).toBe(gitMergeFile('x\n', '', 'y\n').text);
  });

  it('writes CRLF markers in CRLF files, as git does', () => {
    const crlf = (...ls: string[]) => ls.map((l) => l + '\r\n').join('');
    const r = mergeText(crlf('a', 'b', 'c'), crlf('a', 'x', 'c'), crlf('a', 'y', 'c'));
    expect(r.text).toBe(crlf('a', '<<<<<<< ours', 'x', '||||||| base', 'b', '=======', 'y', '>>>>>>> theirs', 'c'));
    expect(r.text).toBe(gitMergeFile(crlf('a', 'b', 'c'), crlf('a', 'x', 'c'), crlf('a', 'y', 'c')).text);
  });
});

describe('refinement (opt-in)', () => {
  const base = 'const total = sum(items, 0);\n';
  const ours = 'let total = sum(items, 0);\n';
  const theirs = 'const total = sum(items, 1);\n';

  it('is off by default', () => {
    expect(mergeText(base, ours, theirs).clean).toBe(false);
  });

  it('resolves one line edited on both sides with an unchanged word between, and reports it', () => {
    const m = mergeText('top\n' + base, 'top\n' + ours, 'top\n' + theirs, { refine: true });
    expect(m).toEqual({
      clean: true,
      text: 'top\nlet total = sum(items, 1);\n',
      hunks: [],
      refined: [{ line: 2, base, ours, theirs, result: 'let total = sum(items, 1);\n' }],
    });
  });

  it('leaves a conflict when the edits are not separated by a whole unchanged word', () => {
    expect(mergeText('f(a, b);\n', 'f(x, b);\n', 'f(a, y);\n', { refine: true }).clean).toBe(false);
    expect(mergeText('value\n', 'values\n', 'Value\n', { refine: true }).clean).toBe(false);
    // two-line conflicts are never refined
    expect(mergeText(lines('a b c', 'd'), lines('x b c', 'D'), lines('a b z', 'E'), { refine: true }).clean).toBe(false);
  });
});

describe('mergeFiles and conflicts as values', () => {
  const buf = (s: string) => Buffer.from(s);

  it('detects binary content as git does', () => {
    expect(isBinary(buf('text\n'))).toBe(false);
    expect(isBinary(Buffer.from([0x41, 0x00, 0x42]))).toBe(true);
    expect(isBinary(Buffer.concat([Buffer.alloc(8000, 0x41), Buffer.from([0])]))).toBe(false);
  });

  it('resolves deletions and identical changes cleanly', () => {
    expect(mergeFiles(buf('a\n'), null, null)).toMatchObject({ clean: true, content: null });
    expect(mergeFiles(buf('a\n'), null, buf('a\n'))).toMatchObject({ clean: true, content: null });
    expect(mergeFiles(buf('a\n'), buf('b\n'), buf('b\n'))).toMatchObject({ clean: true, content: buf('b\n') });
    expect(mergeFiles(null, null, buf('new\n'))).toMatchObject({ clean: true, content: buf('new\n') });
  });

  it('reports delete vs modify as a conflict and keeps the modified side', () => {
    const r = mergeFiles(buf('a\n'), null, buf('b\n'));
    expect(r.clean).toBe(false);
    expect(r.content).toEqual(buf('b\n'));
    expect(r.conflict).toEqual({ kind: 'delete-modify', versions: { base: buf('a\n'), ours: null, theirs: buf('b\n') } });
    expect(mergeFiles(buf('a\n'), buf('c\n'), null)).toMatchObject({ clean: false, content: buf('c\n') });
  });

  it('merges add vs add against an empty base', () => {
    expect(mergeFiles(null, buf('same\n'), buf('same\n'))).toMatchObject({ clean: true, content: buf('same\n') });
    const r = mergeFiles(null, buf('x\n'), buf('y\n'));
    expect(r.clean).toBe(false);
    expect(r.content!.toString()).toBe(gitMergeFile('', 'x\n', 'y\n').text);
    expect(r.conflict?.kind).toBe('content');
  });

  it('never writes markers into binary files: keeps ours and records all three', () => {
    const [b, o, t] = [Buffer.from([1, 0, 1]), Buffer.from([2, 0, 2]), Buffer.from([3, 0, 3])];
    const r = mergeFiles(b, o, t);
    expect(r).toMatchObject({ clean: false, content: o, conflict: { kind: 'binary', versions: { base: b, ours: o, theirs: t } } });
  });

  it('keeps non-UTF-8 bytes intact and reports hunks as text', () => {
    const latin1 = (s: string) => Buffer.from(s, 'latin1');
    const r = mergeFiles(latin1('caf\xe9\nb\nc\n'), latin1('caf\xe9\nb\nC\n'), latin1('CAF\xc9\nb\nc\n'));
    expect(r).toMatchObject({ clean: true, content: latin1('CAF\xc9\nb\nC\n') });
    const u = mergeFiles(buf('é\n'), buf('è\n'), buf('ê\n'), { labels: { ours: 'çà', base: 'b', theirs: 't' } });
    expect(u.content!.toString()).toBe(lines('<<<<<<< çà', 'è', '||||||| b', 'é', '=======', 'ê', '>>>>>>> t'));
    expect(u.hunks[0].ours.text).toBe('è\n');
  });

  it('resolves and maps conflict values', () => {
    expect(resolveTrivial({ base: 1, ours: 1, theirs: 2 })).toEqual({ value: 2 });
    expect(resolveTrivial({ base: 1, ours: 3, theirs: 1 })).toEqual({ value: 3 });
    expect(resolveTrivial({ base: 1, ours: 3, theirs: 3 })).toEqual({ value: 3 });
    expect(resolveTrivial({ base: 1, ours: 2, theirs: 3 })).toBeUndefined();
    expect(mapConflict({ base: 'a', ours: 'bb', theirs: 'ccc' }, (s) => s.length)).toEqual({ base: 1, ours: 2, theirs: 3 });
  });
});

/** A random base and two edited versions, rich in blank lines, braces and shared blocks. */
function generate(rand: () => number): [string, string, string] {
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)];
  const alphabet = ['', '', '', '}', '}', '  }', '{', 'a', 'b', 'return;', 'x = 1;'];
  const base = Array.from({ length: Math.floor(rand() * 30) }, () => pick(alphabet));
  const block = Array.from({ length: 1 + Math.floor(rand() * 3) }, () => pick(alphabet) + pick(['', ' // added']));
  const blockAt = rand() < 0.35 ? Math.floor(rand() * (base.length + 1)) : -1;
  const edit = () => {
    const ls = base.slice();
    for (let k = Math.floor(rand() * 5); k > 0; k--) {
      const p = Math.floor(rand() * (ls.length + 1));
      const op = rand();
      if (op < 0.3) ls.splice(p, 1 + Math.floor(rand() * 2));
      else if (op < 0.55) ls.splice(p, 0, pick(alphabet));
      else if (op < 0.8) ls[p] = pick(alphabet) + '!';
      else ls.push(pick(alphabet) + '?'); // append at the end
    }
    if (blockAt >= 0 && rand() < 0.8) ls.splice(Math.min(blockAt, ls.length), 0, ...block);
    return ls.filter((l) => l !== undefined);
  };
  const eol = rand() < 0.1 ? '\r\n' : '\n';
  const finalNewline = rand() < 0.8;
  const join = (ls: string[], nl: boolean) => (ls.length ? ls.join(eol) + (nl ? eol : '') : '');
  const side = () => join(edit(), rand() < 0.85 ? finalNewline : !finalNewline);
  return [join(base, finalNewline), side(), side()];
}

/** How our merge compares with git's on one case. */
type Outcome =
  | 'identical'
  | 'both clean, texts differ'
  | 'clean where git conflicts'
  | 'conflict where git is clean'
  | 'both conflict, texts differ';

function compareWithGit(base: string, ours: string, theirs: string): Outcome {
  return compare(base, ours, theirs).outcome;
}
function compare(base: string, ours: string, theirs: string): { outcome: Outcome; gitClean: boolean } {
  const git = gitMergeFile(base, ours, theirs);
  const m = mergeText(base, ours, theirs);
  const gitClean = git.conflicts === 0;
  const outcome: Outcome =
    m.clean === gitClean && m.text === git.text
      ? 'identical'
      : m.clean && gitClean
        ? 'both clean, texts differ'
        : m.clean
          ? 'clean where git conflicts'
          : gitClean
            ? 'conflict where git is clean'
            : 'both conflict, texts differ';
  return { outcome, gitClean };
}

describe('agreement with git merge-file --diff3', () => {
  it('never merges cleanly where git conflicts, nor to another text, on 600 generated merges', () => {
    const rand = prng(20240607);
    const tally = new Map<Outcome, number>();
    const wrongClean: string[] = [];
    let gitConflicts = 0;
    const n = 600;
    for (let k = 0; k < n; k++) {
      const [base, ours, theirs] = generate(rand);
      const { outcome, gitClean } = compare(base, ours, theirs);
      tally.set(outcome, (tally.get(outcome) ?? 0) + 1);
      if (outcome === 'clean where git conflicts' || outcome === 'both clean, texts differ') {
        wrongClean.push(`case ${k} (${outcome}): ${JSON.stringify({ base, ours, theirs })}`);
      }
      if (!gitClean) gitConflicts++;
    }
    const identical = tally.get('identical') ?? 0;
    const others = [...tally].filter(([o]) => o !== 'identical').map(([o, c]) => `${c} ${o}`);
    console.log(
      `agreement with git merge-file --diff3 on ${n} generated merges: ${identical} identical, markers included ` +
        `(${((100 * identical) / n).toFixed(1)}%); ${others.join(', ')}; ${gitConflicts} conflicts in git`,
    );
    // (a) where both merge cleanly, the same text; (b) never clean where git conflicts
    expect(wrongClean).toEqual([]);
    expect(identical / n).toBeGreaterThan(0.9); // 88% before the compaction of ./compact.ts, 92.8% with it
    expect(gitConflicts).toBeGreaterThan(100); // the generator exercises both outcomes
  });

  it('conflicts where another equally long alignment makes the changes touch, as git’s does', () => {
    // node-diff3 alone merges these cleanly; git conflicts.
    const cases: [string, string, string][] = [
      // ours' edit of the first "}" is, as node-diff3 aligns it, an insertion
      // before it and a deletion of the second "}": the deletion can slide up
      [lines('}', '}'), lines('} // added', '}'), lines('} // added', '}', '}')],
      // theirs' blank line kept, ours' deleted: either blank line
      [lines('', ''), lines(''), lines('}!', '')],
      // the lines matched as early as possible put theirs' deletion of "{" next to ours' edit
      [lines('x = 1;', '{', '', ''), lines('x = 1;', '', '!', 'x = 1;?'), lines('x = 1;', '', '')],
    ];
    for (const [base, ours, theirs] of cases) {
      expect(diff3Merge(splitLines(ours), splitLines(base), splitLines(theirs)).every((r) => 'ok' in r)).toBe(true);
      expect(gitMergeFile(base, ours, theirs).conflicts).toBeGreaterThan(0);
      expect(mergeText(base, ours, theirs).clean).toBe(false);
    }
  });

  it('does not take a change as made on both sides when another alignment says it differs', () => {
    // Both add "x = 1;?" at the end; as git aligns ours, ours also adds "  }", "" before it, so the ends differ.
    // (The compacted alignment alone sees the same addition on both sides, and would drop ours' "  }", "".)
    const [base, ours, theirs] = [lines('', 'a', '  }', ''), lines('', '!', '  }', '', '  }', '', 'x = 1;?'), lines('', 'a', '  }', '', 'x = 1;?')];
    expect(gitMergeFile(base, ours, theirs).conflicts).toBeGreaterThan(0);
    expect(compareWithGit(base, ours, theirs)).toBe('identical');
  });

  it('merges changes one unchanged line apart and conflicts on touching ones, as git does', () => {
    const cases: [string, string, string][] = [
      [lines('a', 'b', 'c'), lines('A', 'b', 'c'), lines('a', 'b', 'C')], // one line apart: clean
      [lines('a', 'b'), lines('A', 'b'), lines('a', 'B')], // adjacent edits
      [lines('a', 'b', 'c'), lines('a', 'X', 'b', 'c'), lines('a', 'B', 'c')], // insertion right before an edited line
      [lines('a', 'b', 'c'), lines('a', 'X', 'b', 'c'), lines('A', 'b', 'c')], // insertion right after an edited line
      [lines('a', 'b'), lines('a', 'X', 'b'), lines('a', 'Y', 'b')], // two insertions at one place
      [lines('a', 'b'), lines('a', 'X', 'b'), lines('a', 'X', 'b', 'c')], // the same insertion, and one elsewhere
    ];
    for (const [base, ours, theirs] of cases) expect(compareWithGit(base, ours, theirs)).toBe('identical');
    expect(mergeText(...cases[0]).clean).toBe(true);
    expect(mergeText(...cases[1]).clean).toBe(false);
  });

  it('takes a block both sides added once, as git does', () => {
    const base = lines('a', '', 'b', '}', '');
    const block = ['function added() {', '  return 1;', '}', ''];
    const ours = lines('a', '', 'b', '}', '', ...block);
    const theirs = lines('A', '', 'b', '}', '', ...block);
    expect(compareWithGit(base, ours, theirs)).toBe('identical');
    expect(mergeText(base, ours, theirs)).toMatchObject({ clean: true, text: lines('A', '', 'b', '}', '', ...block) });
  });

  it('stays safe on long files with heavy edits', () => {
    const rand = prng(7);
    const outcomes: Outcome[] = [];
    for (let n = 0; n < 4; n++) {
      const pick = () => (rand() < 0.3 ? '' : rand() < 0.2 ? '}' : `x${Math.floor(rand() * 600)}`);
      const base = Array.from({ length: 3000 }, pick);
      const mutate = (p: number) =>
        base.flatMap((l) => {
          const q = rand();
          return q < p ? [] : q < 2 * p ? [pick()] : q < 3 * p ? [l, pick()] : [l];
        });
      const [b, o, t] = [base, mutate(0.25), mutate(0.05)].map((ls) => ls.join('\n') + '\n');
      outcomes.push(compareWithGit(b, o, t));
    }
    expect(outcomes).not.toContain('clean where git conflicts');
    expect(outcomes).not.toContain('both clean, texts differ');
  });
});

describe('lcs', () => {
  it('gives node-diff3’s LCS result on random inputs', () => {
    const rand = prng(99);
    for (let n = 0; n < 500; n++) {
      const alphabet = ['', '}', 'a', 'b', 'c', 'd'].slice(0, 2 + Math.floor(rand() * 5));
      const gen = () => Array.from({ length: Math.floor(rand() * 40) }, () => alphabet[Math.floor(rand() * alphabet.length)]);
      const [a, b] = [gen(), gen()];
      expect(lcs(a, b)).toEqual(LCS(a, b));
      // and a near copy, in which most equal lines are already matched
      const c = a.filter(() => rand() > 0.1).map((l) => (rand() < 0.1 ? alphabet[Math.floor(rand() * alphabet.length)] : l));
      expect(lcs(a, c)).toEqual(LCS(a, c));
    }
  });
});

/** Which lines `git diff` (no indent heuristic, as merge-file) deletes and inserts: "del|ins", 0-based. */
function gitDiffChanges(a: string, b: string): string {
  fs.writeFileSync(path.join(tmp, 'a'), a, 'latin1');
  fs.writeFileSync(path.join(tmp, 'b'), b, 'latin1');
  let out: string;
  try {
    out = execFileSync('git', ['-c', 'diff.indentHeuristic=false', 'diff', '--no-index', '-U0', 'a', 'b'], { cwd: tmp, encoding: 'latin1' });
  } catch (e) {
    out = (e as { stdout: string }).stdout; // exit 1: the files differ
  }
  const [del, ins]: number[][] = [[], []];
  for (const m of out.matchAll(/^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@/gm)) {
    for (let k = 0; k < Number(m[2] ?? 1); k++) del.push(Number(m[1]) - 1 + k);
    for (let k = 0; k < Number(m[4] ?? 1); k++) ins.push(Number(m[3]) - 1 + k);
  }
  return `${del}|${ins}`;
}

describe('compactAlignment', () => {
  const changes = (a: string[], b: string[], compacted: boolean) => {
    const { ids: [ia, ib], count } = internLines(a, b);
    const nodes: { i: number; j: number }[] = [];
    for (let c = lcsOfIds(ia!, ib!, count); c.buffer1index >= 0; c = c.chain!) nodes.unshift({ i: c.buffer1index, j: c.buffer2index });
    let pairs = { oi: Int32Array.from(nodes, (n) => n.i), xi: Int32Array.from(nodes, (n) => n.j) };
    if (compacted) pairs = compactAlignment(ia!, ib!, pairs);
    const [ka, kb] = [new Set(pairs.oi), new Set(pairs.xi)];
    for (let k = 0; k < pairs.oi.length; k++) expect(a[pairs.oi[k]!]).toBe(b[pairs.xi[k]!]);
    return `${a.flatMap((_, i) => (ka.has(i) ? [] : [i]))}|${b.flatMap((_, j) => (kb.has(j) ? [] : [j]))}`;
  };

  it('lines a deletion up with an insertion at the same place, as git does', () => {
    const [a, b] = [['b\n', '}\n', '{\n', '{\n'], ['b\n', '}\n', '!\n', '{\n']];
    expect(changes(a, b, false)).toBe('3|2');
    expect(changes(a, b, true)).toBe('2|2');
    expect(gitDiffChanges(a.join(''), b.join(''))).toBe('2|2');
  });

  it('agrees with git diff on generated files more often than the LCS alone', () => {
    const rand = prng(11);
    let [plain, compacted] = [0, 0];
    const n = 200;
    for (let k = 0; k < n; k++) {
      const [base, ours] = generate(rand);
      const [a, b] = [splitLines(base), splitLines(ours)];
      const git = gitDiffChanges(base, ours);
      if (changes(a, b, false) === git) plain++;
      if (changes(a, b, true) === git) compacted++;
    }
    console.log(`two-way diffs equal to git diff's on ${n} generated cases: ${plain} from the LCS, ${compacted} compacted`);
    expect(compacted).toBeGreaterThan(plain);
    expect(compacted / n).toBeGreaterThan(0.95);
  });
});

describe('long files', () => {
  it('merges a 6,000-line file full of repeated lines as git does (its time: npm run bench:merge)', () => {
    const rand = prng(1);
    const base: string[] = [];
    for (let f = 0; base.length < 6000; f++) {
      base.push(`function f${f}(a) {`, '  if (a) {', '    return a;', '  }', '', '  return 0;', '}', '');
    }
    const ours = base.slice();
    const theirs = base.slice();
    for (let k = 0; k < 20; k++) {
      ours[Math.floor(rand() * 3000)] = `// ours ${k}`;
      theirs[3000 + Math.floor(rand() * 3000)] = `// theirs ${k}`;
    }
    const [b, o, t] = [base, ours, theirs].map((ls) => ls.join('\n') + '\n');
    const r = mergeText(b, o, t);
    expect(r.clean).toBe(true);
    expect(r.text).toBe(gitMergeFile(b, o, t).text);
  });
});
