import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FsError, O_CREAT, O_TRUNC, O_WRONLY, type TreeOps } from '../../src/overlay/contract.js';
import { contentOf, modeOf, targetOf, walk } from '../../src/overlay/materialize.js';
import { Overlay } from '../../src/overlay/overlay.js';
import { kindOf, type TreeView } from '../../src/overlay/view.js';

const made: string[] = [];

/** A temporary directory, removed by removeTempDirs() (call it in afterEach/afterAll; the core benchmarks use these too). */
export function tempDir(prefix = 'cowfs-unit-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  made.push(dir);
  return dir;
}

export function removeTempDirs(): void {
  for (const dir of made.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
}

/** A workspace on disk with the given files ('dir/' keys make directories, '->x' values symlinks). */
export function makeWorkspace(files: Record<string, string>): string {
  const root = tempDir('cowfs-ws-');
  for (const [p, content] of Object.entries(files)) {
    const abs = path.join(root, p);
    if (p.endsWith('/')) { fs.mkdirSync(abs, { recursive: true }); continue; }
    fs.mkdirSync(path.dirname(abs), { recursive: true });
    if (content.startsWith('->')) fs.symlinkSync(content.slice(2), abs);
    else fs.writeFileSync(abs, content);
  }
  return root;
}

export async function openOverlay(files: Record<string, string>, stateDir?: string): Promise<{ ov: Overlay; ws: string }> {
  const ws = makeWorkspace(files);
  return { ov: await Overlay.open({ workspace: ws, stateDir }), ws };
}

/** The errno an overlay call fails with, or undefined when it succeeds. */
export function errnoOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof FsError) return err.code;
    throw err;
  }
  return undefined;
}

export function writeFile(tree: TreeOps, p: string, data: string | Buffer, mode = 0o644): void {
  const buf = Buffer.from(data);
  const fh = tree.create(p, mode, O_WRONLY | O_CREAT | O_TRUNC, 0, 0);
  try {
    tree.write(fh, buf, buf.length, 0);
  } finally {
    tree.release(fh);
  }
}

export function readFile(tree: TreeOps, p: string): string {
  const fh = tree.open(p, 0);
  try {
    const size = tree.fgetattr(fh).size;
    const buf = Buffer.alloc(size);
    const n = tree.read(fh, buf, size, 0);
    return buf.subarray(0, n).toString();
  } finally {
    tree.release(fh);
  }
}

/** A whole tree as `path → "file 644 content" | "dir 755" | "link -> target"`, for comparisons. */
export function snapshot(view: TreeView, ov: Overlay): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [p, r] of walk(view)) {
    const kind = kindOf(r);
    out[p] = kind === 'file' ? `file ${modeOf(r).toString(8)} ${contentOf(r, ov.blobs).toString()}`
      : kind === 'dir' ? `dir ${modeOf(r).toString(8)}`
      : `link -> ${targetOf(r)}`;
  }
  return out;
}

/** A checksum-like listing of a real directory, to prove the workspace was never written. */
export function diskListing(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const visit = (dir: string) => {
    for (const d of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const abs = path.join(dir, d.name);
      const rel = path.relative(root, abs);
      if (rel === '.cowfs') continue;
      const st = fs.lstatSync(abs);
      if (d.isSymbolicLink()) out[rel] = `link -> ${fs.readlinkSync(abs)}`;
      else if (d.isDirectory()) { out[rel] = `dir ${(st.mode & 0o7777).toString(8)}`; visit(abs); }
      else out[rel] = `file ${(st.mode & 0o7777).toString(8)} ${fs.readFileSync(abs).toString()} ${st.mtimeMs}`;
    }
  };
  visit(root);
  return out;
}
