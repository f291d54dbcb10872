/**
 * Whole-file three-way merge: absent files (null), binary files and text,
 * with git's rules. Text is merged as bytes (latin1 strings, one character
 * per byte) so that any encoding survives unchanged and lines compare
 * byte for byte, as in git.
 */
import { resolveTrivial, type Conflict } from './conflict.js';
import { mergeText, type ConflictHunk, type MergeOptions, type RefinedHunk } from './merge3.js';

export type FileConflictKind = 'content' | 'binary' | 'delete-modify';

export interface FileMerge {
  clean: boolean;
  /**
   * What the working file becomes (null: absent): the merge, with markers
   * for a text conflict; ours for a binary conflict; the modified side for
   * delete/modify (as git leaves it).
   */
  content: Buffer | null;
  /** set when not clean, with the three versions as data */
  conflict?: { kind: FileConflictKind; versions: Conflict<Buffer | null> };
  /** text conflicts and refinements; their text is decoded as UTF-8 for display */
  hunks: ConflictHunk[];
  refined: RefinedHunk[];
}

/** git's rule (buffer_is_binary): a NUL byte in the first 8,000 bytes. */
export function isBinary(buf: Uint8Array): boolean {
  return buf.subarray(0, 8000).includes(0);
}

const sameFile = (x: Buffer | null, y: Buffer | null) => (x === null || y === null ? x === y : x.equals(y));

export function mergeFiles(
  base: Buffer | null,
  ours: Buffer | null,
  theirs: Buffer | null,
  opts: MergeOptions = {},
): FileMerge {
  const versions = { base, ours, theirs };
  // Both deleted, identical changes, or only one side changed.
  const trivial = resolveTrivial(versions, sameFile);
  if (trivial) return { clean: true, content: trivial.value, hunks: [], refined: [] };

  const conflict = (kind: FileConflictKind, content: Buffer | null): FileMerge => ({
    clean: false,
    content,
    conflict: { kind, versions },
    hunks: [],
    refined: [],
  });
  if (ours === null) return conflict('delete-modify', theirs);
  if (theirs === null) return conflict('delete-modify', ours);
  if ([base, ours, theirs].some((v) => v !== null && isBinary(v))) return conflict('binary', ours);

  // Added on both sides: merge against an empty base, as git does.
  const bytes = (v: Buffer | null) => (v === null ? '' : v.toString('latin1'));
  const labels = opts.labels && {
    ours: toBytes(opts.labels.ours),
    base: toBytes(opts.labels.base),
    theirs: toBytes(opts.labels.theirs),
  };
  const r = mergeText(bytes(base), bytes(ours), bytes(theirs), { ...opts, labels });
  return {
    clean: r.clean,
    content: Buffer.from(r.text, 'latin1'),
    conflict: r.clean ? undefined : { kind: 'content', versions },
    hunks: r.hunks.map((h) => ({
      line: h.line,
      ours: { start: h.ours.start, text: fromBytes(h.ours.text) },
      base: { start: h.base.start, text: fromBytes(h.base.text) },
      theirs: { start: h.theirs.start, text: fromBytes(h.theirs.text) },
    })),
    refined: r.refined.map((h) => ({
      line: h.line,
      base: fromBytes(h.base),
      ours: fromBytes(h.ours),
      theirs: fromBytes(h.theirs),
      result: fromBytes(h.result),
    })),
  };
}

/** A string's UTF-8 bytes as a latin1 string, and back. */
const toBytes = (s: string) => Buffer.from(s, 'utf8').toString('latin1');
const fromBytes = (s: string) => Buffer.from(s, 'latin1').toString('utf8');
