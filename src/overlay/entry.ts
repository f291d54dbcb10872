import type { BlobId } from '../store/blobs.js';

/**
 * What one layer says about one path. A layer holds only what an agent
 * changed; everything else comes from below (DESIGN.md, "Words").
 * `baseHash` is the content the entry was derived from in the tree below
 * (null: nothing was there) — the merge base for that path.
 */
export interface FileEntry {
  kind: 'file';
  hash: BlobId;
  size: number;
  mode: number;
  mtimeMs: number;
  ino: number;
  uid: number;
  gid: number;
  baseHash: BlobId | null;
}

export interface DirEntry {
  kind: 'dir';
  mode: number;
  mtimeMs: number;
  ino: number;
  uid: number;
  gid: number;
  /** Nothing below this layer shows through (a directory made over a deleted one). */
  opaque: boolean;
  /** The directory's content below this layer lives at this path (a renamed inherited directory). */
  redirect: string | null;
}

export interface SymlinkEntry {
  kind: 'symlink';
  target: string;
  mtimeMs: number;
  ino: number;
  uid: number;
  gid: number;
}

/** Hides the path and everything under it in the layers below. */
export interface WhiteoutEntry {
  kind: 'whiteout';
}

export type Entry = FileEntry | DirEntry | SymlinkEntry | WhiteoutEntry;
export type LiveEntry = FileEntry | DirEntry | SymlinkEntry;
