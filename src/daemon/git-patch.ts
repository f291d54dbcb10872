import { createHash } from 'node:crypto';
import { deflateSync } from 'node:zlib';
import { structuredPatch } from 'diff';
import { isBinary } from '../merge/index.js';
import { contentOf, modeOf, targetOf } from '../overlay/materialize.js';
import { baseName } from '../overlay/paths.js';
import type { PathChange } from '../overlay/tree-diff.js';
import { kindOf, type Resolved } from '../overlay/view.js';
import type { BlobStore } from '../store/blobs.js';

/** One file of a patch, for `--stat`, `--name-only` and `--json`. */
export interface FileDiff {
  path: string;
  /** Where a renamed file came from. */
  oldPath: string | null;
  status: 'added' | 'deleted' | 'modified' | 'renamed';
  oldMode: string | null;
  newMode: string | null;
  binary: boolean;
  added: number;
  removed: number;
}

/** A file as git sees it: mode 100644, 100755 or 120000 (a symlink, its target as content). */
interface Side {
  mode: string;
  bytes: Buffer;
}

const NULL_ID = '0'.repeat(40);

function sideOf(r: Resolved | undefined, blobs: BlobStore): Side | null {
  if (!r) return null;
  switch (kindOf(r)) {
    case 'dir': return null; // git tracks no directories
    case 'symlink': return { mode: '120000', bytes: Buffer.from(targetOf(r)) };
    case 'file': return { mode: modeOf(r) & 0o111 ? '100755' : '100644', bytes: contentOf(r, blobs) };
  }
}

/** git's blob id (what `index` lines name, and what `git apply` checks a binary patch against). */
function gitId(s: Side | null): string {
  if (!s) return NULL_ID;
  return createHash('sha1').update(`blob ${s.bytes.length}\0`).update(s.bytes).digest('hex');
}

/** A path as git writes it in headers: C-quoted when it holds quotes, backslashes, control or non-ASCII bytes. */
function quoted(prefix: string, p: string): string {
  const bytes = Buffer.from(prefix + p);
  if (!bytes.some((b) => b < 0x20 || b >= 0x7f || b === 0x22 || b === 0x5c)) return prefix + p;
  const esc: Record<number, string> = { 0x22: '\\"', 0x5c: '\\\\', 0x09: '\\t', 0x0a: '\\n', 0x0d: '\\r' };
  let out = '"';
  for (const b of bytes) out += esc[b] ?? (b < 0x20 || b >= 0x7f ? `\\${b.toString(8).padStart(3, '0')}` : String.fromCharCode(b));
  return `${out}"`;
}

/**
 * The changes between two trees as a patch `git apply` accepts: `diff --git`
 * headers, new/deleted file modes, mode changes, exact renames, symlinks as
 * git stores them (mode 120000, the target as content), and binary files as
 * `GIT binary patch` literals, so applying reproduces them byte for byte.
 * Text is handled as bytes (latin1), whatever its encoding; the patch is
 * returned the same way.
 */
export function gitPatch(changes: readonly PathChange[], blobs: BlobStore, withText = true): { files: FileDiff[]; patch: string } {
  const pairs: { path: string; before: Side | null; after: Side | null }[] = [];
  for (const c of changes) {
    const before = sideOf(c.before, blobs);
    const after = sideOf(c.after, blobs);
    if (!before && !after) continue;
    // A file that became a symlink (or back) is a deletion and an addition, as in git.
    if (before && after && (before.mode === '120000') !== (after.mode === '120000')) {
      pairs.push({ path: c.path, before, after: null }, { path: c.path, before: null, after });
    } else pairs.push({ path: c.path, before, after });
  }
  // Exact renames: a deleted file whose content reappears at an added path.
  const deleted = new Map<string, (typeof pairs)[number][]>();
  for (const x of pairs) {
    if (!x.before || x.after) continue;
    const key = `${x.before.mode === '120000'}:${gitId(x.before)}`;
    deleted.set(key, [...(deleted.get(key) ?? []), x]);
  }
  const renamedFrom = new Map<(typeof pairs)[number], string>();
  for (const x of pairs) {
    if (x.before || !x.after) continue;
    const candidates = deleted.get(`${x.after.mode === '120000'}:${gitId(x.after)}`);
    if (!candidates?.length) continue;
    // Of identical deleted files, the one whose name is closest (as git prefers the same base name).
    const score = (q: string) => (baseName(q) === baseName(x.path) ? 1e6 : 0) + commonPrefix(q, x.path);
    const from = candidates.reduce((best, c) => (score(c.path) > score(best.path) ? c : best));
    candidates.splice(candidates.indexOf(from), 1);
    x.before = from.before;
    renamedFrom.set(x, from.path);
    from.after = from.before; // consumed: dropped below
  }
  const files: FileDiff[] = [];
  let patch = '';
  for (const x of pairs) {
    if (x.before && x.after && x.before === x.after) continue;
    const oldPath = renamedFrom.get(x) ?? null;
    const { text, file } = fileDiff(oldPath ?? x.path, x.path, x.before, x.after, oldPath !== null, withText);
    files.push(file);
    patch += text;
  }
  return { files, patch };
}

function fileDiff(from: string, to: string, before: Side | null, after: Side | null, renamed: boolean, withText: boolean) {
  const binary = [before, after].some((s) => s !== null && isBinary(s.bytes));
  const file: FileDiff = {
    path: to, oldPath: renamed ? from : null,
    status: renamed ? 'renamed' : !before ? 'added' : !after ? 'deleted' : 'modified',
    oldMode: before?.mode ?? null, newMode: after?.mode ?? null, binary, added: 0, removed: 0,
  };
  let head = `diff --git ${quoted('a/', from)} ${quoted('b/', to)}\n`;
  if (!before) head += `new file mode ${after!.mode}\n`;
  else if (!after) head += `deleted file mode ${before.mode}\n`;
  else if (before.mode !== after.mode) head += `old mode ${before.mode}\nnew mode ${after.mode}\n`;
  if (renamed) head += `similarity index 100%\nrename from ${quoted('', from)}\nrename to ${quoted('', to)}\n`;
  const sameContent = before !== null && after !== null && before.bytes.equals(after.bytes);
  if (sameContent) return { text: head, file };
  const modeSuffix = before && after && before.mode === after.mode ? ` ${after.mode}` : '';
  head += `index ${gitId(before)}..${gitId(after)}${modeSuffix}\n`;
  if (binary) {
    if (!withText) return { text: '', file };
    return { text: `${head}GIT binary patch\n${literal(after)}\n${literal(before)}\n`, file };
  }
  const old = before?.bytes.toString('latin1') ?? '';
  const now = after?.bytes.toString('latin1') ?? '';
  const { hunks } = structuredPatch(from, to, old, now, '', '', { context: 3 });
  let body = '';
  for (const h of hunks) {
    body += `@@ -${range(h.oldStart, h.oldLines)} +${range(h.newStart, h.newLines)} @@\n`;
    for (const line of h.lines) {
      if (line[0] === '+') file.added++;
      else if (line[0] === '-') file.removed++;
      body += `${line}\n`;
    }
  }
  if (body === '') return { text: head, file }; // an empty file added or deleted
  return { text: withText ? `${head}--- ${before ? quoted('a/', from) : '/dev/null'}\n+++ ${after ? quoted('b/', to) : '/dev/null'}\n${body}` : '', file };
}

function commonPrefix(a: string, b: string): number {
  let i = 0;
  while (i < a.length && a[i] === b[i]) i++;
  return i;
}

/** A hunk range as git writes it: an empty range starts at the line before. */
function range(start: number, count: number): string {
  const s = count === 0 ? start - 1 : start;
  return count === 1 ? `${s}` : `${s},${count}`;
}

const B85 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!#$%&()*+-;<=>?@^_`{|}~';

/** A `literal` hunk of a git binary patch: the whole content, deflated, in git's base85 lines of up to 52 bytes. */
function literal(s: Side | null): string {
  const raw = s?.bytes ?? Buffer.alloc(0);
  const z = deflateSync(raw);
  let out = `literal ${raw.length}\n`;
  for (let i = 0; i < z.length; i += 52) {
    const chunk = z.subarray(i, i + 52);
    out += chunk.length <= 26 ? String.fromCharCode(64 + chunk.length) : String.fromCharCode(96 + chunk.length - 26);
    for (let j = 0; j < chunk.length; j += 4) {
      let v = 0;
      for (let k = 0; k < 4; k++) v = v * 256 + (chunk[j + k] ?? 0);
      let five = '';
      for (let k = 0; k < 5; k++) { five = B85[v % 85]! + five; v = Math.floor(v / 85); }
      out += five;
    }
    out += '\n';
  }
  return out;
}
