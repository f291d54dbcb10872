/**
 * Longest common subsequence of two line arrays, with exactly the output of
 * node-diff3's `LCS()` (Hunt–McIlroy 1976, as written by node-diff3, MIT,
 * https://github.com/bhousel/node-diff3) but without its quadratic scans.
 *
 * node-diff3 keeps `candidates`, whose buffer2index values ("ends") rise
 * strictly, and for each line i of buffer1 walks the equal lines j of
 * buffer2 in order, placing j by scanning candidates from r until
 * `candidates[s].buffer2index < j < candidates[s+1].buffer2index`. When j
 * is already an end, no s qualifies and the scan runs to the end, so files
 * with many equal lines (blank lines, `}`) cost (pairs of equal lines) ×
 * (LCS length): seconds on a 6,000-line file (issue 7, upstream issue #84).
 * The same decisions, faster:
 * - candidates[r..] is not written during the current line, so it is sorted
 *   and a binary search finds the same s;
 * - the j that find no slot are never visited: those at or below
 *   candidates[r].buffer2index are skipped by a binary search in the sorted
 *   positions of the line, and those that are already ends are skipped by
 *   a bitset per distinct line that marks its positions that are ends. So
 *   the work per line of buffer1 is about the number of candidates it
 *   changes, not the number of lines equal to it.
 */

/** node-diff3's `ILCSResult`: the LCS as a linked list, last common pair first. */
export interface LcsNode {
  buffer1index: number;
  buffer2index: number;
  chain: LcsNode | null;
}

/**
 * The positions in buffer2 of each distinct line, ascending, all in one
 * array: those of line id k are pos[from[k] .. from[k + 1]). Bit q of the
 * line's words in `isEnd` (from word wordFrom[k]) is set while its q-th
 * position is some candidate's buffer2index.
 */
interface Index {
  pos: Int32Array;
  from: Int32Array;
  wordFrom: Int32Array;
  isEnd: Uint32Array;
  /** for each j: its rank among the positions of its line */
  rankOf: Int32Array;
}

function indexLines(ids2: Int32Array, idCount: number): Index {
  const counts = new Int32Array(idCount);
  for (let j = 0; j < ids2.length; j++) counts[ids2[j]]++;
  const from = new Int32Array(idCount + 1);
  const wordFrom = new Int32Array(idCount + 1);
  for (let k = 0; k < idCount; k++) {
    from[k + 1] = from[k] + counts[k];
    wordFrom[k + 1] = wordFrom[k] + ((counts[k] + 31) >> 5);
  }
  const pos = new Int32Array(ids2.length);
  const rankOf = new Int32Array(ids2.length);
  counts.fill(0);
  for (let j = 0; j < ids2.length; j++) {
    const k = ids2[j];
    rankOf[j] = counts[k]++;
    pos[from[k] + rankOf[j]] = j;
  }
  return { pos, from, wordFrom, isEnd: new Uint32Array(wordFrom[idCount]), rankOf };
}

/** Index of the lowest set bit of a non-zero 32-bit word. */
const lowestBit = (w: number) => 31 - Math.clz32(w & -w);

/** The first position of line k above x that is not an end, or -1. */
function nextFree(ix: Index, k: number, x: number): number {
  const { pos, isEnd } = ix;
  const [first, end] = [ix.from[k], ix.from[k + 1]];
  let [lo, hi] = [first, end];
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (pos[mid] <= x) lo = mid + 1;
    else hi = mid;
  }
  if (lo === end) return -1;
  const q = lo - first; // rank among the line's positions
  const [w0, w1] = [ix.wordFrom[k], ix.wordFrom[k + 1]];
  let w = w0 + (q >> 5);
  let free = ~isEnd[w] & (-1 << (q & 31));
  while (free === 0) {
    if (++w === w1) return -1;
    free = ~isEnd[w];
  }
  const rank = ((w - w0) << 5) + lowestBit(free);
  return rank < end - first ? pos[first + rank] : -1;
}

/** Numbers the distinct strings of the given arrays 0, 1, ...: equal lines, equal ids. */
export function internLines(...buffers: (readonly string[])[]): { ids: Int32Array[]; count: number } {
  const id = new Map<string, number>();
  const ids = buffers.map((buffer) => {
    const out = new Int32Array(buffer.length);
    for (let i = 0; i < buffer.length; i++) {
      let k = id.get(buffer[i]);
      if (k === undefined) id.set(buffer[i], (k = id.size));
      out[i] = k;
    }
    return out;
  });
  return { ids, count: id.size };
}

export function lcs(buffer1: readonly string[], buffer2: readonly string[]): LcsNode {
  const { ids, count } = internLines(buffer1, buffer2);
  return lcsOfIds(ids[0], ids[1], count);
}

/** `lcs` of two lines arrays given as ids from `internLines` (ids below idCount). */
export function lcsOfIds(ids1: Int32Array, ids2: Int32Array, idCount: number): LcsNode {
  const ix = indexLines(ids2, idCount);
  const mark = (j: number, on: boolean) => {
    const [w, bit] = [ix.wordFrom[ids2[j]] + (ix.rankOf[j] >> 5), 1 << (ix.rankOf[j] & 31)];
    if (on) ix.isEnd[w] |= bit;
    else ix.isEnd[w] &= ~bit;
  };

  // candidates[t], with its buffer2index also in ends[t] (read in the hot loop)
  const candidates: LcsNode[] = [{ buffer1index: -1, buffer2index: -1, chain: null }];
  const ends = new Int32Array(Math.min(ids1.length, ids2.length) + 2);
  ends[0] = -1;
  const put = (slot: number, node: LcsNode) => {
    if (slot < candidates.length && ends[slot] >= 0) mark(ends[slot], false);
    candidates[slot] = node;
    ends[slot] = node.buffer2index;
    if (node.buffer2index >= 0) mark(node.buffer2index, true);
  };

  for (let i = 0; i < ids1.length; i++) {
    const k = ids1[i];
    if (ix.from[k] === ix.from[k + 1]) continue; // not in buffer2
    let r = 0;
    let c = candidates[0];
    for (;;) {
      // The first j above candidates[r].buffer2index that is not an end:
      // node-diff3 finds no slot for the ones in between.
      const j = nextFree(ix, k, ends[r]);
      if (j < 0) break;

      // Last s >= r with candidates[s].buffer2index < j.
      let lo = r;
      let hi = candidates.length - 1;
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if (ends[mid] < j) lo = mid;
        else hi = mid - 1;
      }
      const s = lo;

      const next: LcsNode = { buffer1index: i, buffer2index: j, chain: candidates[s] };
      put(r, c);
      r = s + 1;
      c = next;
      if (r === candidates.length) break;
    }
    put(r, c);
  }
  return candidates[candidates.length - 1];
}
