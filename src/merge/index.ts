/** The merge engine: three-way text merge with git merge-file --diff3 output, whole-file rules, conflicts as data. */
export { mergeText, splitLines } from './merge3.js';
export type { MergeOptions, MergeLabels, MergeResult, ConflictHunk, HunkSide, RefinedHunk } from './merge3.js';
export { mergeFiles, isBinary } from './files.js';
export type { FileMerge, FileConflictKind } from './files.js';
export { resolveTrivial, mapConflict } from './conflict.js';
export type { Conflict } from './conflict.js';
export { lcs } from './lcs.js';
export type { LcsNode } from './lcs.js';
export { charDiff, conflictHighlights, unifiedDiffHighlights, splitText } from './char-diff.js';
export type { CharDiff, CharRange, LineChange } from './char-diff.js';
