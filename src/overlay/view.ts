import type { Dirent } from 'node:fs';
import { S_IFDIR, S_IFLNK, S_IFREG, type Attr } from './contract.js';
import type { DirEntry, Entry, LiveEntry } from './entry.js';
import type { Layer, Probe } from './layer.js';
import { join, reroot } from './paths.js';
import type { DiskNode, Workspace } from './workspace.js';

/** A path resolved in a tree: a layer's entry, or a file of the workspace on disk. */
export type Resolved =
  | { src: 'layer'; entry: LiveEntry; path: string }
  | { src: 'disk'; node: DiskNode; path: string };

export const ROOT_INO = 1;

/**
 * A tree as a stack of layers over the workspace: an agent's working tree
 * (its own layer on top of its base commit's chain) or a commit's tree.
 * Resolution is the one loop of DESIGN.md, "Reads": top layer first, a
 * whiteout hides, an opaque directory stops inheritance, a redirect (a
 * renamed inherited directory) moves the lookup to where the content lies
 * below, and the workspace on disk comes last.
 */
export class TreeView {
  constructor(readonly layers: readonly Layer[], readonly workspace: Workspace) {}

  lookup(p: string, from = 0): Resolved | undefined {
    let q = p;
    for (let i = from; i < this.layers.length; i++) {
      const r = this.layers[i]!.probe(q);
      if (!r) continue;
      if (r.at === q) return r.entry.kind === 'whiteout' ? undefined : { src: 'layer', entry: r.entry, path: q };
      if (r.entry.kind === 'dir' && r.entry.redirect !== null) q = reroot(q, r.at, r.entry.redirect);
      else return undefined;
    }
    const node = this.workspace.lookup(q);
    return node && { src: 'disk', node, path: q };
  }

  /** The names in a directory with their file types; undefined when `p` is not a directory. */
  list(p: string): Map<string, number> | undefined {
    const top = this.lookup(p);
    if (!top || kindOf(top) !== 'dir') return undefined;
    const seen = new Map<string, number>(); // 0: whited out
    let q: string | null = p;
    for (const layer of this.layers) {
      if (q === null) return finish(seen);
      const above = layer.probeAbove(q);
      // A whiteout or a file above: this layer (and all below) has nothing here.
      if (above && above.entry.kind !== 'dir') return finish(seen);
      for (const name of layer.namesIn(q)) {
        // A name that is only a link to deeper entries exists thanks to a lower layer.
        const e = layer.get(join(q, name));
        if (e && !seen.has(name)) seen.set(name, typeOf(e));
      }
      q = belowIn(layer, q, above);
    }
    if (q !== null) for (const d of this.workspace.list(q)) if (!seen.has(d.name)) seen.set(d.name, direntType(d));
    return finish(seen);
  }
}

/**
 * Where directory `q` continues in the layers below `layer`: at its own
 * redirect, nowhere if it (or an ancestor) is opaque, at the rerooted path
 * if an ancestor was renamed; null when nothing below shows through.
 */
function belowIn(layer: Layer, q: string, above: Probe | undefined): string | null {
  const own = layer.get(q);
  if (own) {
    if (own.kind !== 'dir') return null;
    if (own.redirect !== null) return own.redirect;
    if (own.opaque) return null;
  }
  if (!above) return q;
  const dir = above.entry as DirEntry;
  return dir.redirect !== null ? reroot(q, above.at, dir.redirect) : null;
}

function finish(seen: Map<string, number>): Map<string, number> {
  for (const [name, type] of seen) if (type === 0) seen.delete(name);
  return seen;
}

export function kindOf(r: Resolved): 'file' | 'dir' | 'symlink' {
  return r.src === 'layer' ? r.entry.kind : r.node.kind;
}

function typeOf(e: Entry): number {
  switch (e.kind) {
    case 'file': return S_IFREG;
    case 'dir': return S_IFDIR;
    case 'symlink': return S_IFLNK;
    case 'whiteout': return 0;
  }
}

function direntType(d: Dirent): number {
  return d.isDirectory() ? S_IFDIR : d.isSymbolicLink() ? S_IFLNK : S_IFREG;
}

/** stat(2) of a resolved path. */
export function attrOf(r: Resolved): Attr {
  const ino = r.path === '' ? ROOT_INO : undefined;
  if (r.src === 'disk') {
    const s = r.node.stat;
    return {
      ino: ino ?? s.ino, mode: s.mode, size: s.size, nlink: s.isDirectory() ? 1 : s.nlink, uid: s.uid, gid: s.gid,
      atimeMs: s.atimeMs, mtimeMs: s.mtimeMs, ctimeMs: s.ctimeMs,
    };
  }
  return entryAttr(r.entry, ino);
}

export function entryAttr(e: LiveEntry, ino?: number): Attr {
  const common = { ino: ino ?? e.ino, uid: e.uid, gid: e.gid, atimeMs: e.mtimeMs, mtimeMs: e.mtimeMs, ctimeMs: e.mtimeMs };
  switch (e.kind) {
    case 'file': return { ...common, mode: S_IFREG | e.mode, size: e.size, nlink: 1 };
    case 'dir': return { ...common, mode: S_IFDIR | e.mode, size: 4096, nlink: 1 };
    case 'symlink': return { ...common, mode: S_IFLNK | 0o777, size: Buffer.byteLength(e.target), nlink: 1 };
  }
}
