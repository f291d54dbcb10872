/**
 * Line-level three-way merge with `git merge-file --diff3 -p` output.
 *
 * The algorithm is node-diff3's (`diffIndices` → `diff3MergeRegions` →
 * `diff3Merge`, by Bryan Housel and contributors, MIT,
 * https://github.com/bhousel/node-diff3), re-implemented here because
 * node-diff3 calls its own `LCS()`, whose candidate placement is quadratic
 * on files with many equal lines; ./lcs.ts gives the same LCS fast. Its
 * runs of changed lines are then slid as git's diff slides them
 * (./compact.ts), which brings the output closer to git's. Lines keep
 * their terminators; the last line of a file may lack one, as in git.
 * Nothing is trimmed before diffing (that changes which lines align).
 *
 * Where git's diff and the LCS may align repeated lines differently, a
 * clean merge is only accepted when it does not depend on the alignment
 * (see `mergeRegions`): "a clean merge that is wrong is worse than a
 * conflict". test/unit/merge.test.ts measures the agreement with git.
 *
 * The output (markers, labels, the newline git adds after a last line that
 * has none, CRLF markers) follows `git merge-file --diff3 -p`, as measured
 * with git 2.39. Derived from node-diff3 and from experiments with git's
 * binary only, not from git's source.
 */
import { compactAlignment, type Pairs } from './compact.js';
import { internLines, lcsOfIds, type LcsNode } from './lcs.js';
import { refineLine } from './refine.js';

export interface MergeLabels {
  ours: string;
  base: string;
  theirs: string;
}

export interface MergeOptions {
  /** conflict-marker labels; default ours / base / theirs */
  labels?: MergeLabels;
  /** opt-in character-level resolution of one-line conflicts (./refine.ts) */
  refine?: boolean;
}

/** One version's part of a conflict: where it starts in that version (0-based line) and its text. */
export interface HunkSide {
  start: number;
  text: string;
}

export interface ConflictHunk {
  /** 1-based line of the `<<<<<<<` marker in the merged text */
  line: number;
  ours: HunkSide;
  base: HunkSide;
  theirs: HunkSide;
}

/** A one-line conflict that refinement resolved, reported for audit. */
export interface RefinedHunk {
  /** 1-based line of the result in the merged text */
  line: number;
  base: string;
  ours: string;
  theirs: string;
  result: string;
}

export interface MergeResult {
  clean: boolean;
  text: string;
  hunks: ConflictHunk[];
  refined: RefinedHunk[];
}

/** Splits text into lines that keep their '\n'; the last line may lack it. '' has no lines. */
export function splitLines(text: string): string[] {
  const out: string[] = [];
  let from = 0;
  while (from < text.length) {
    const nl = text.indexOf('\n', from);
    const to = nl < 0 ? text.length : nl + 1;
    out.push(text.slice(from, to));
    from = to;
  }
  return out;
}

/** A run of `o` that one side replaced: o[oStart, oEnd) became side[sStart, sEnd). */
interface Hunk {
  side: 'a' | 'b';
  /** which alignment it comes from (`Alignment`): the primary one gives the output, the others only check it */
  align: Alignment;
  oStart: number;
  oEnd: number;
  sStart: number;
  sEnd: number;
  /** the base lines the hunk can cover when slid over equal lines (see `slide`) */
  lo: number;
  hi: number;
}

/** The alignments a merge is checked against: the primary (git's, as near as we get it), and the two extremes. */
const PRIMARY = 0;
const EARLY = 1;
const LATE = 2;
type Alignment = typeof PRIMARY | typeof EARLY | typeof LATE;
const ALIGNMENTS: Alignment[] = [PRIMARY, EARLY, LATE];

/** node-diff3's LCS, which matches lines as late as it can. */
function lateAlignment(o: Int32Array, x: Int32Array, idCount: number): Pairs {
  const nodes: LcsNode[] = [];
  for (let c = lcsOfIds(o, x, idCount); c.buffer1index >= 0; c = c.chain!) nodes.push(c);
  const [oi, xi] = [new Int32Array(nodes.length), new Int32Array(nodes.length)];
  nodes.forEach((c, k) => {
    oi[nodes.length - 1 - k] = c.buffer1index;
    xi[nodes.length - 1 - k] = c.buffer2index;
  });
  return { oi, xi };
}

/** The same LCS on the reversed files, mirrored back: it matches lines as early as it can. */
function earlyAlignment(o: Int32Array, x: Int32Array, idCount: number): Pairs {
  const nodes: LcsNode[] = [];
  for (let c = lcsOfIds(o.slice().reverse(), x.slice().reverse(), idCount); c.buffer1index >= 0; c = c.chain!) nodes.push(c);
  const [oi, xi] = [new Int32Array(nodes.length), new Int32Array(nodes.length)];
  nodes.forEach((c, k) => {
    oi[k] = o.length - 1 - c.buffer1index;
    xi[k] = x.length - 1 - c.buffer2index;
  });
  return { oi, xi };
}

/**
 * node-diff3's `diffIndices(o, side)`: the mismatched runs between matched
 * pairs, in order, each with its slide reach.
 */
function diffIndices(o: Int32Array, x: Int32Array, pairs: Pairs, side: 'a' | 'b', align: Alignment): Hunk[] {
  const out: Hunk[] = [];
  let [po, px] = [0, 0];
  for (let k = 0; k <= pairs.oi.length; k++) {
    const [i, j] = k < pairs.oi.length ? [pairs.oi[k], pairs.xi[k]] : [o.length, x.length];
    if (i > po || j > px) out.push({ side, align, oStart: po, oEnd: i, sStart: px, sEnd: j, lo: po, hi: i });
    [po, px] = [i + 1, j + 1];
  }
  out.forEach((h, k) => slide(h, o, x, out[k - 1], out[k + 1]));
  return out;
}

/**
 * How far a hunk can slide. Where equal lines repeat, diffs as short as
 * the LCS's put the same change elsewhere: deleting one of two blank lines
 * deletes the first or the second; inserting "}" after a "}" inserts it
 * before or after. Moving a hunk up one line is such a diff when the kept
 * line above it equals its own last line on both sides; down likewise.
 * It slides over kept lines only, up to its neighbours. `lo`/`hi` bound
 * the base lines it can cover.
 */
function slide(h: Hunk, o: Int32Array, x: Int32Array, prev?: Hunk, next?: Hunk): void {
  const [top, bottom] = [prev ? prev.oEnd : 0, next ? next.oStart : o.length];
  let [os, oe, xs, xe] = [h.oStart, h.oEnd, h.sStart, h.sEnd];
  while (os > top && o[os - 1] === x[xs - 1] && o[oe - 1] === x[xe - 1]) [os, oe, xs, xe] = [os - 1, oe - 1, xs - 1, xe - 1];
  h.lo = os;
  [os, oe, xs, xe] = [h.oStart, h.oEnd, h.sStart, h.sEnd];
  while (oe < bottom && o[oe] === x[xe] && o[os] === x[xs]) [os, oe, xs, xe] = [os + 1, oe + 1, xs + 1, xe + 1];
  h.hi = oe;
}

/** What the merge is made of: base lines both sides kept, one side's change, or a conflict. */
type Region =
  | { stable: true; lines: readonly string[] }
  | { stable: false; o: Span; a: Span; b: Span };

/** [start, end) in one version */
interface Span {
  start: number;
  end: number;
}

/**
 * node-diff3's `diff3MergeRegions` + `diff3Merge` (false conflicts
 * excluded): the hunks of both sides in base order; hunks that overlap or
 * touch (the next starts at or before the end of the group so far) form one
 * group. Like git (measured: a change next to the other side's change,
 * an insertion right before or after a line the other side changed, both
 * conflict), changes must be separated by at least one unchanged base line
 * to merge cleanly. A group with hunks of one side takes that side's lines;
 * a group with hunks of both sides is a conflict unless both sides' text
 * for it is the same (the same change made twice).
 *
 * Our rule on top: where lines repeat, several alignments are equally
 * long, and git's diff may pick another than ours (on generated merges
 * that was the only cause of node-diff3 merging cleanly where git
 * conflicts, or cleanly to another text). So groups are formed by every
 * base line a hunk could cover: each hunk widened to where it can slide
 * (`slide`), and, given `hunks` from more than one alignment (mergeText
 * adds the "as early" and "as late as possible" ones when the merge would
 * otherwise be clean), the hunks of all of them; and the same change made
 * twice must be the same under every alignment given. The text comes from
 * the primary alignment: each side's lines for a group are the base lines
 * it kept around its primary hunks, which map one to one.
 */
function mergeRegions(a: readonly string[], o: readonly string[], b: readonly string[], hunks: Hunk[]): Region[] {
  hunks.sort((x, y) => x.lo - y.lo || x.oStart - y.oStart);

  const regions: Region[] = [];
  let done = 0; // base lines consumed so far
  // side index - base index after each alignment's hunks so far
  const delta = { a: [0, 0, 0], b: [0, 0, 0] };
  const given = ALIGNMENTS.filter((k) => hunks.some((h) => h.align === k));
  for (let k = 0; k < hunks.length; ) {
    // One group: hunks whose reach overlaps or touches the group's so far.
    let reach = hunks[k].hi;
    let n = k + 1;
    while (n < hunks.length && hunks[n].lo <= reach) reach = Math.max(reach, hunks[n++].hi);
    const group = hunks.slice(k, n);
    k = n;

    // The base lines the group's hunks replace, and each side's lines for them.
    let oStart = Infinity;
    let oEnd = -Infinity;
    for (const h of group) [oStart, oEnd] = [Math.min(oStart, h.oStart), Math.max(oEnd, h.oEnd)];
    if (oStart > done) regions.push({ stable: true, lines: o.slice(done, oStart) });
    done = oEnd;
    const span = (side: 'a' | 'b', align: Alignment): Span => {
      const start = oStart + delta[side][align]!;
      for (const h of group) if (h.align === align && h.side === side) delta[side][align] += h.sEnd - h.sStart - (h.oEnd - h.oStart);
      return { start, end: oEnd + delta[side][align]! };
    };
    const spans = { a: ALIGNMENTS.map((k) => span('a', k)), b: ALIGNMENTS.map((k) => span('b', k)) };
    const [sa, sb] = [spans.a[PRIMARY]!, spans.b[PRIMARY]!];
    const ours = group.some((h) => h.side === 'a');
    const theirs = group.some((h) => h.side === 'b');
    const sameChange = () =>
      sameLines(a, sa, b, sb) && given.every((k) => sameLines(a, sa, a, spans.a[k]!) && sameLines(b, sb, b, spans.b[k]!));
    if (!theirs || !ours || sameChange()) {
      const [x, s] = ours ? [a, sa] : [b, sb];
      if (s.end > s.start) regions.push({ stable: true, lines: x.slice(s.start, s.end) });
    } else {
      regions.push({ stable: false, o: { start: oStart, end: oEnd }, a: sa, b: sb });
    }
  }
  if (o.length > done) regions.push({ stable: true, lines: o.slice(done) });
  return regions;
}

function sameLines(x: readonly string[], sx: Span, y: readonly string[], sy: Span): boolean {
  if (sx.end - sx.start !== sy.end - sy.start) return false;
  for (let i = 0; i < sx.end - sx.start; i++) if (x[sx.start + i] !== y[sy.start + i]) return false;
  return true;
}

/**
 * The end of line git writes after a conflict marker, as measured with git
 * 2.39: CRLF when the line before the conflict in ours and in theirs (their
 * first line when the conflict starts the file) does not end in a bare
 * '\n' (a missing or unterminated line does not count), and the base's
 * first line ends in CRLF.
 */
function markerEol(a: readonly string[], aStart: number, b: readonly string[], bStart: number, o: readonly string[]): string {
  const eol = (line: string | undefined) =>
    line === undefined || !line.endsWith('\n') ? undefined : line.endsWith('\r\n') ? 'crlf' : 'lf';
  const around = (x: readonly string[], start: number) => eol(start > 0 ? x[start - 1] : x[0]);
  return around(a, aStart) !== 'lf' && around(b, bStart) !== 'lf' && eol(o[0]) === 'crlf' ? '\r\n' : '\n';
}

export function mergeText(base: string, ours: string, theirs: string, opts: MergeOptions = {}): MergeResult {
  // Shortcuts whose result the full merge provably gives too.
  if (ours === theirs || theirs === base) return { clean: true, text: ours, hunks: [], refined: [] };
  if (ours === base) return { clean: true, text: theirs, hunks: [], refined: [] };

  const labels = opts.labels ?? { ours: 'ours', base: 'base', theirs: 'theirs' };
  const o = splitLines(base);
  const a = splitLines(ours);
  const b = splitLines(theirs);

  const out: string[] = [];
  const hunks: ConflictHunk[] = [];
  const refined: RefinedHunk[] = [];
  const {
    ids: [io, ia, ib],
    count,
  } = internLines(o, a, b);
  const late = { a: lateAlignment(io, ia, count), b: lateAlignment(io, ib, count) };
  const primary = [
    ...diffIndices(io, ia, compactAlignment(io, ia, late.a), 'a', PRIMARY),
    ...diffIndices(io, ib, compactAlignment(io, ib, late.b), 'b', PRIMARY),
  ];
  let regions = mergeRegions(a, o, b, [...primary]);
  if (regions.every((r) => r.stable)) {
    // Clean so far: it must stay clean, to the same text, when each side's
    // lines are matched as early and as late as possible too. (Only checked
    // here: in a merge that conflicts anyway it would mostly widen
    // conflicts git keeps narrow.)
    const others = [
      ...diffIndices(io, ia, earlyAlignment(io, ia, count), 'a', EARLY),
      ...diffIndices(io, ib, earlyAlignment(io, ib, count), 'b', EARLY),
      ...diffIndices(io, ia, late.a, 'a', LATE),
      ...diffIndices(io, ib, late.b, 'b', LATE),
    ];
    regions = mergeRegions(a, o, b, [...primary, ...others]);
  }
  for (const r of regions) {
    if (r.stable) {
      for (const l of r.lines) out.push(l);
      continue;
    }
    const [as, os, bs] = [a.slice(r.a.start, r.a.end), o.slice(r.o.start, r.o.end), b.slice(r.b.start, r.b.end)];
    if (opts.refine && as.length === 1 && os.length === 1 && bs.length === 1) {
      const result = refineLine(os[0], as[0], bs[0]);
      if (result !== undefined) {
        refined.push({ line: out.length + 1, base: os[0], ours: as[0], theirs: bs[0], result });
        out.push(result);
        continue;
      }
    }
    const eol = markerEol(a, r.a.start, b, r.b.start, o);
    hunks.push({
      line: out.length + 1,
      ours: { start: r.a.start, text: as.join('') },
      base: { start: r.o.start, text: os.join('') },
      theirs: { start: r.b.start, text: bs.join('') },
    });
    const section = (marker: string, lines: readonly string[]) => {
      out.push(marker + eol);
      for (const l of lines) out.push(l);
      // git ends an unterminated last line before the next marker
      if (lines.length && !lines[lines.length - 1].endsWith('\n')) out[out.length - 1] += eol;
    };
    section(`<<<<<<< ${labels.ours}`, as);
    section(`||||||| ${labels.base}`, os);
    section('=======', bs);
    out.push(`>>>>>>> ${labels.theirs}${eol}`);
  }
  return { clean: hunks.length === 0, text: out.join(''), hunks, refined };
}
