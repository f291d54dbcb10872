/**
 * Character-level highlighting for a terminal (colors) or for anything else
 * (git's word-diff marks: removed as [-x-], added as {+x+}).
 */
import type { CharDiff, CharRange } from '../merge/char-diff.js';

const RED = '\x1b[31m';
const GREEN = '\x1b[32m';
const STRONG_RED = '\x1b[1;97;41m';
const STRONG_GREEN = '\x1b[1;97;42m';
const RESET = '\x1b[0m';

export type Change = 'removed' | 'added';

function strong(text: string, kind: Change, color: boolean): string {
  if (color) return `${kind === 'removed' ? STRONG_RED : STRONG_GREEN}${text}${RESET}`;
  return kind === 'removed' ? `[-${text}-]` : `{+${text}+}`;
}

/** A line with the given ranges highlighted; on a terminal the rest of a `-`/`+` line is colored too. */
export function markRanges(line: string, ranges: readonly CharRange[], kind: Change, color: boolean): string {
  const base = color ? (kind === 'removed' ? RED : GREEN) : '';
  let out = base;
  let at = 0;
  for (const [s, e] of ranges) {
    out += line.slice(at, s) + strong(line.slice(s, e), kind, color) + base;
    at = e;
  }
  return out + line.slice(at) + (color ? RESET : '');
}

/** `after` shown against `before` inline: unchanged text, then each removed and added run in place. */
export function inlineDiff(before: string, after: string, d: CharDiff, color: boolean): string {
  let out = '';
  let [i, j, r, a] = [0, 0, 0, 0];
  while (i < before.length || j < after.length) {
    const rem = d.removed[r];
    const add = d.added[a];
    if (rem && rem[0] === i) {
      out += strong(before.slice(rem[0], rem[1]), 'removed', color);
      i = rem[1];
      r++;
    } else if (add && add[0] === j) {
      out += strong(after.slice(add[0], add[1]), 'added', color);
      j = add[1];
      a++;
    } else {
      // Unchanged text up to the next change on either side.
      const n = Math.min((rem ? rem[0] : before.length) - i, (add ? add[0] : after.length) - j);
      out += after.slice(j, j + n);
      [i, j] = [i + n, j + n];
    }
  }
  return out;
}
