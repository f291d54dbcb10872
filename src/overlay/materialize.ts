import fs from 'node:fs';
import path from 'node:path';
import type { BlobStore } from '../store/blobs.js';
import type { FileEntry, SymlinkEntry } from './entry.js';
import { join } from './paths.js';
import { kindOf, type Resolved, type TreeView } from './view.js';

/** Every path of a tree (the root excluded), parents before children, names sorted. */
export function* walk(view: TreeView, dir = ''): Generator<[string, Resolved]> {
  const names = view.list(dir);
  if (!names) return;
  for (const name of [...names.keys()].sort()) {
    const p = join(dir, name);
    const r = view.lookup(p);
    if (!r) continue;
    yield [p, r];
    if (kindOf(r) === 'dir') yield* walk(view, p);
  }
}

export function contentOf(r: Resolved, blobs: BlobStore): Buffer {
  return r.src === 'layer' ? blobs.get((r.entry as FileEntry).hash) : fs.readFileSync(r.node.realPath);
}

export function targetOf(r: Resolved): string {
  return r.src === 'layer' ? (r.entry as SymlinkEntry).target : fs.readlinkSync(r.node.realPath);
}

export function modeOf(r: Resolved): number {
  return r.src === 'layer' ? (r.entry.kind === 'symlink' ? 0o777 : r.entry.mode) : r.node.stat.mode & 0o7777;
}

/** Writes a tree out as a plain directory (replay --out): content, modes, symlinks. */
export function writeTree(view: TreeView, blobs: BlobStore, outDir: string): number {
  fs.mkdirSync(outDir, { recursive: true });
  let count = 0;
  const dirModes: [string, number][] = [];
  for (const [p, r] of walk(view)) {
    const dest = path.join(outDir, p);
    switch (kindOf(r)) {
      case 'dir':
        fs.mkdirSync(dest);
        dirModes.push([dest, modeOf(r)]);
        break;
      case 'symlink':
        fs.symlinkSync(targetOf(r), dest);
        break;
      case 'file':
        if (r.src === 'layer') blobs.copyTo((r.entry as FileEntry).hash, dest);
        else fs.copyFileSync(r.node.realPath, dest);
        fs.chmodSync(dest, modeOf(r));
    }
    count++;
  }
  // Directory modes last, so a read-only directory can still be filled.
  for (const [dest, mode] of dirModes.reverse()) fs.chmodSync(dest, mode);
  return count;
}
