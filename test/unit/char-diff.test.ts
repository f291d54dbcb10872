import { createTwoFilesPatch } from 'diff';
import { describe, expect, it } from 'vitest';
import { charDiff, conflictHighlights, unifiedDiffHighlights } from '../../src/merge/char-diff.js';
import { inlineDiff, markRanges } from '../../src/cli/highlight.js';
import { prng } from '../helpers/random.js';

describe('character-level diffs of lines', () => {
  it('gives the removed and added ranges of each line', () => {
    expect(charDiff('const width = 10;', 'const width = 11;')).toEqual({ removed: [[15, 16]], added: [[15, 16]] });
    expect(charDiff('f(a)', 'f(a, b)')).toEqual({ removed: [], added: [[3, 6]] });
    expect(charDiff('same', 'same')).toEqual({ removed: [], added: [] });
  });

  it('shows a change inline, marked without a terminal and colored on one', () => {
    const [a, b] = ['let total = sum(items, 0);', 'const total = sum(items, 1);'];
    expect(inlineDiff(a, b, charDiff(a, b), false)).toBe('[-le-]{+cons+}t total = sum(items, [-0-]{+1+});');
    const colored = inlineDiff(a, b, charDiff(a, b), true);
    expect(colored).toContain('\x1b[1;97;41mle\x1b[0m');
    expect(colored).toContain('\x1b[1;97;42mcons\x1b[0m');
    expect(colored.replace(/\x1b\[[0-9;]*m/g, '')).toBe('leconst total = sum(items, 01);');
    expect(markRanges('-const width = 10;', [[16, 17]], 'removed', false)).toBe('-const width = 1[-0-];');
  });

  it('inline rendering keeps both lines whole, on random edits', () => {
    const rand = prng(3);
    const word = () => ['a', 'bc', ' ', '(', 'é', '10', 'x'][Math.floor(rand() * 7)];
    for (let n = 0; n < 300; n++) {
      const a = Array.from({ length: Math.floor(rand() * 12) }, word).join('');
      const b = a.split('').map((c) => (rand() < 0.2 ? word() : c)).join('') + (rand() < 0.3 ? word() : '');
      const shown = inlineDiff(a, b, charDiff(a, b), false);
      // dropping the added runs gives a, dropping the removed ones gives b
      expect(shown.replace(/\{\+.*?\+\}/gs, '').replace(/\[-(.*?)-\]/gs, '$1')).toBe(a);
      expect(shown.replace(/\[-.*?-\]/gs, '').replace(/\{\+(.*?)\+\}/gs, '$1')).toBe(b);
    }
  });

  it('highlights the paired lines of a unified diff, not its headers or unrelated lines', () => {
    const before = 'header\nconst width = 10;\nkeep\nold line\n';
    const after = 'header\nconst width = 12;\nkeep\nsomething else entirely\n';
    const diff = createTwoFilesPatch('a/f', 'b/f', before, after);
    const lines = diff.split('\n');
    const h = unifiedDiffHighlights(diff);
    expect(h.map((x) => lines[x.line])).toEqual(['-const width = 10;', '+const width = 12;']);
    expect(h.map((x) => x.ranges)).toEqual([[[16, 17]], [[16, 17]]]);
    // a removed line that looks like a header is still content
    const dashes = createTwoFilesPatch('a/f', 'b/f', '-- a comment\n', '-- the comment\n');
    expect(unifiedDiffHighlights(dashes).map((x) => dashes.split('\n')[x.line])).toEqual(['--- a comment', '+-- the comment']);
  });

  it('marks what each side of a conflict changed, against the base or, when both added, each other', () => {
    const c = conflictHighlights({ base: 'const w = 10; const h = 20;\n', ours: 'const w = 11; const h = 20;\n', theirs: 'const w = 10; const h = 21;\n' });
    expect(c.ours).toEqual([{ line: 0, against: 'base', removed: [[11, 12]], added: [[11, 12]] }]);
    expect(c.theirs).toEqual([{ line: 0, against: 'base', removed: [[25, 26]], added: [[25, 26]] }]);
    const added = conflictHighlights({ base: '', ours: 'x = 1;\r\n', theirs: 'x = 2;\r\nmore\r\n' });
    expect(added.ours).toEqual([{ line: 0, against: 'theirs', removed: [[4, 5]], added: [[4, 5]] }]);
    expect(added.theirs).toEqual([{ line: 0, against: 'ours', removed: [[4, 5]], added: [[4, 5]] }]);
  });
});
