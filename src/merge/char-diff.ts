/**
 * The characters that differ between two versions of a line, for showing
 * changes and conflicts precisely (`cowfs show`, `cowfs conflicts`):
 * diff-match-patch's character diff, cleaned up to whole words and runs
 * where that reads better (its semantic cleanup), as ranges.
 */
import DiffMatchPatch from 'diff-match-patch';

const dmp = new DiffMatchPatch();
// Only for display, in the daemon that serves the mounts: a long minified line gets coarser marks, never a blocked second.
dmp.Diff_Timeout = 0.05;

/** [start, end) in UTF-16 code units of one line. */
export type CharRange = [number, number];

/** What differs between `before` and `after`: the removed ranges of before, the added ranges of after. */
export interface CharDiff {
  removed: CharRange[];
  added: CharRange[];
}

export function charDiff(before: string, after: string): CharDiff {
  const diffs = dmp.diff_main(before, after);
  dmp.diff_cleanupSemantic(diffs);
  const out: CharDiff = { removed: [], added: [] };
  let [b, a] = [0, 0];
  for (const [op, text] of diffs) {
    if (op === DiffMatchPatch.DIFF_DELETE) out.removed.push([b, (b += text.length)]);
    else if (op === DiffMatchPatch.DIFF_INSERT) out.added.push([a, (a += text.length)]);
    else [b, a] = [b + text.length, a + text.length];
  }
  return out;
}

/**
 * For the lines removed and added together in a unified diff (a run of
 * `-` lines followed by a run of `+` lines inside a hunk, paired in order),
 * the ranges of each diff line that differ from its partner, offsets
 * counted in the diff line itself (after its `-`/`+`). `line` is the index
 * in `diff.split('\n')`. Pairs that share nothing are left out:
 * highlighting every character says no more than the `-`/`+`.
 */
export function unifiedDiffHighlights(diff: string): { line: number; ranges: CharRange[] }[] {
  const lines = diff.split('\n');
  // Which lines are a hunk's content (not the ---/+++ headers of a file).
  const inHunk: boolean[] = [];
  let hunk = false;
  for (const l of lines) {
    if (l.startsWith('@@')) hunk = true;
    else if (!/^[-+ \\]/.test(l)) hunk = false;
    inHunk.push(hunk && !l.startsWith('@@'));
  }
  const is = (i: number, sign: string) => inHunk[i] === true && lines[i]!.startsWith(sign);
  const out: { line: number; ranges: CharRange[] }[] = [];
  for (let i = 0; i < lines.length; ) {
    if (!is(i, '-')) {
      i++;
      continue;
    }
    const from = i;
    while (is(i, '-')) i++;
    const mid = i;
    while (is(i, '+')) i++;
    for (let k = 0; k < Math.min(mid - from, i - mid); k++) {
      const [r, a] = [lines[from + k]!.slice(1), lines[mid + k]!.slice(1)];
      const d = charDiff(r, a);
      if (!sharesText(d, r, a)) continue;
      const shift = (xs: CharRange[]): CharRange[] => xs.map(([s, e]) => [s + 1, e + 1]);
      out.push({ line: from + k, ranges: shift(d.removed) }, { line: mid + k, ranges: shift(d.added) });
    }
  }
  return out.sort((x, y) => x.line - y.line);
}

/** One side's line of a conflict hunk and what differs from the line it is compared with. */
export interface LineChange extends CharDiff {
  /** index of the line in that side's part of the hunk */
  line: number;
  against: 'base' | 'ours' | 'theirs';
}

/**
 * The characters each side changed in a conflict hunk: line i of ours and
 * of theirs against line i of the base, or, where the base has no such
 * line (both added), against the other side's line i.
 */
export function conflictHighlights(h: { base: string; ours: string; theirs: string }): { ours: LineChange[]; theirs: LineChange[] } {
  const [base, ours, theirs] = [h.base, h.ours, h.theirs].map(splitText);
  const side = (mine: string[], other: string[], otherName: 'ours' | 'theirs'): LineChange[] => {
    const out: LineChange[] = [];
    mine.forEach((l, i) => {
      const [ref, against] = base[i] !== undefined ? [base[i]!, 'base' as const] : [other[i], otherName];
      if (ref === undefined || ref === l) return;
      const d = charDiff(ref, l);
      if (sharesText(d, ref, l)) out.push({ line: i, against, ...d });
    });
    return out;
  };
  return { ours: side(ours!, theirs!, 'theirs'), theirs: side(theirs!, ours!, 'ours') };
}

/** A hunk's text as lines without their terminators. */
export function splitText(text: string): string[] {
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  return lines.map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
}

/** Whether the two lines have anything in common besides what the diff replaced. */
function sharesText(d: CharDiff, before: string, after: string): boolean {
  const covered = (xs: CharRange[]) => xs.reduce((n, [s, e]) => n + e - s, 0);
  return covered(d.removed) < before.length || covered(d.added) < after.length;
}
