/**
 * The property test of issue 2: random operation sequences over a tree of
 * agents (roots over the workspace, children, grandchildren), with commits in
 * between, checked step by step against a plain in-memory model of what each
 * agent must see. At the end: replaying the log to remembered points equals
 * the model at those points, replaying to the end equals the live trees,
 * every head equals its committed model, the workspace on disk is unchanged,
 * and a reopened Overlay shows the same trees.
 *
 * Knobs (environment):
 *   COWFS_PROP_SEED=<n>   first seed (default fixed, so CI is deterministic);
 *                         a failing test's name and message print its seed:
 *                         rerun it alone with COWFS_PROP_SEED=<seed> COWFS_PROP_RUNS=1
 *   COWFS_PROP_RUNS=<n>   number of sequences (default 60)
 *   COWFS_PROP_STEPS=<n>  steps per sequence (default 80)
 *   COWFS_PROP_STRICT=1   also fail on the known deviations from Linux listed
 *                         in TOLERATED below (they are reported, not hidden)
 *
 * Conventions of the overlay API the model follows (contract.ts): the kernel
 * resolves symlinks before calling the overlay, so the overlay never follows
 * one: opening a symlink is ELOOP, truncating one EINVAL, and a symlink in
 * the middle of a path is not a directory.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FsError, O_RDWR, RENAME_NOREPLACE, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, type Errno, type TreeOps } from '../../src/overlay/contract.js';
import { Overlay } from '../../src/overlay/overlay.js';
import { diskListing, makeWorkspace, removeTempDirs, snapshot, tempDir, writeFile } from '../helpers/core.js';
import { errnoOf } from '../helpers/core.js';

const RUNS = Number(process.env.COWFS_PROP_RUNS ?? 60);
const STEPS = Number(process.env.COWFS_PROP_STEPS ?? 80);
const FIRST_SEED = Number(process.env.COWFS_PROP_SEED ?? 20240601);
const STRICT = process.env.COWFS_PROP_STRICT === '1';
const MAX_AGENTS = 8;

// ---- a seeded PRNG --------------------------------------------------------

class Rng {
  constructor(private s: number) {}
  /** mulberry32 */
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  weighted<T extends string>(w: Record<T, number>): T {
    const entries = Object.entries(w) as [T, number][];
    let r = this.next() * entries.reduce((s, [, n]) => s + n, 0);
    for (const [k, n] of entries) if ((r -= n) < 0) return k;
    return entries[entries.length - 1]![0];
  }
}

// ---- the model --------------------------------------------------------------

type MNode =
  | { kind: 'file'; data: Buffer; mode: number }
  | { kind: 'dir'; mode: number }
  | { kind: 'symlink'; target: string };
/** path → node; never holds a path under a non-directory. Nodes are never mutated in place. */
type MTree = Map<string, MNode>;

interface MAgent {
  name: string;
  parent: string | null;
  depth: number;
  work: MTree;
  head: MTree;
}

const parentOf = (p: string) => (p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : '');
const isWithin = (p: string, dir: string) => p === dir || p.startsWith(`${dir}/`);
const reroot = (p: string, from: string, to: string) => (p === from ? to : to + p.slice(from.length));

/** Linux's walk of the directories leading to `p`: a missing one is ENOENT, a non-directory ENOTDIR. */
function prefixErr(t: MTree, p: string): Errno | undefined {
  const parts = p.split('/');
  let cur = '';
  for (let i = 0; i < parts.length - 1; i++) {
    cur = cur ? `${cur}/${parts[i]}` : parts[i]!;
    const n = t.get(cur);
    if (!n) return 'ENOENT';
    if (n.kind !== 'dir') return 'ENOTDIR';
  }
  return undefined;
}

function childrenOf(t: MTree, dir: string): string[] {
  return [...t.keys()].filter((q) => parentOf(q) === dir);
}

/** The paths where two snapshots differ, one per line. */
function diff(got: Record<string, string>, want: Record<string, string>): string {
  const lines: string[] = [];
  for (const p of [...new Set([...Object.keys(got), ...Object.keys(want)])].sort()) {
    if (got[p] === want[p]) continue;
    const show = (v: string | undefined) => (v === undefined ? '(absent)' : JSON.stringify(v.length > 60 ? `${v.slice(0, 60)}…` : v));
    lines.push(`  ${p}: overlay ${show(got[p])}, model ${show(want[p])}`);
  }
  return lines.join('\n');
}

/** Fails with the differing paths when a tree is not what the model says. */
function same(got: Record<string, string>, want: Record<string, string>, fail: (msg: string) => never, what: string): void {
  const d = diff(got, want);
  if (d) fail(`${what}\n${d}`);
}

function modelSnapshot(t: MTree): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [p, n] of t) {
    out[p] = n.kind === 'file' ? `file ${n.mode.toString(8)} ${n.data.toString()}`
      : n.kind === 'dir' ? `dir ${n.mode.toString(8)}`
      : `link -> ${n.target}`;
  }
  return out;
}

const typeName = (mode: number) => ((mode & S_IFMT) === S_IFDIR ? 'dir' : (mode & S_IFMT) === S_IFLNK ? 'symlink' : (mode & S_IFMT) === S_IFREG ? 'file' : `?${mode}`);

/** readdir of the model's directories and getattr of its paths, through the adapter contract. */
function adapterView(tree: TreeOps, t: MTree): Record<string, string> {
  const out: Record<string, string> = {};
  const tryCode = (fn: () => string) => {
    try {
      return fn();
    } catch (err) {
      if (err instanceof FsError) return err.code;
      throw err;
    }
  };
  for (const dir of ['', ...[...t].filter(([, n]) => n.kind === 'dir').map(([p]) => p)]) {
    out[`readdir ${dir}`] = tryCode(() => tree.readdir(dir).map((d) => `${d.name}:${typeName(d.type)}`).sort().join(' '));
  }
  for (const [p, n] of t) {
    out[`getattr ${p}`] = tryCode(() => {
      const st = tree.getattr(p);
      const perm = n.kind === 'symlink' ? '' : ` ${(st.mode & 0o7777).toString(8)}`;
      return `${typeName(st.mode)}${perm}${n.kind === 'dir' ? '' : ` size ${st.size}`}`;
    });
  }
  return out;
}

function modelAdapterView(t: MTree): Record<string, string> {
  const out: Record<string, string> = {};
  for (const dir of ['', ...[...t].filter(([, n]) => n.kind === 'dir').map(([p]) => p)]) {
    out[`readdir ${dir}`] = childrenOf(t, dir).map((q) => `${q.slice(q.lastIndexOf('/') + 1)}:${t.get(q)!.kind}`).sort().join(' ');
  }
  for (const [p, n] of t) {
    out[`getattr ${p}`] = n.kind === 'file' ? `file ${n.mode.toString(8)} size ${n.data.length}`
      : n.kind === 'dir' ? `dir ${n.mode.toString(8)}`
      : `symlink size ${Buffer.byteLength(n.target)}`;
  }
  return out;
}

/** Bytes `data` written at `off` of `old` (a hole in between reads as zeros). */
function overwrite(old: Buffer, off: number, data: Buffer): Buffer {
  const out = Buffer.alloc(Math.max(old.length, off + data.length));
  old.copy(out);
  data.copy(out, off);
  return out;
}

function resize(old: Buffer, size: number): Buffer {
  const out = Buffer.alloc(size);
  old.copy(out, 0, 0, Math.min(size, old.length));
  return out;
}

// ---- the workspace --------------------------------------------------------

const TOP = ['a', 'b', 'd1', 'd2', 'e'] as const;
const SUB = ['a', 'b', 's'] as const;

/** The starting workspace: dirs, files, a symlink to a file, a dangling one, an empty dir. */
const WORKSPACE: Record<string, string> = {
  'a': 'top a\n',
  'd1/a': 'one a\n',
  'd1/b': 'one b\n',
  'd1/s/a': 'deep a\n',
  'd1/s/b': '->../a',
  'd2/a': 'two a\n',
  'd2/b': '->../nowhere',
  'd2/s/s/a': 'deeper a\n',
  'e/': '',
};

function buildWorkspace(): { ws: string; tree: MTree } {
  const ws = makeWorkspace(WORKSPACE);
  // Modes independent of the umask; d1/a executable.
  const tree: MTree = new Map();
  const visit = (dir: string) => {
    for (const name of fs.readdirSync(path.join(ws, dir)).sort()) {
      const rel = dir ? `${dir}/${name}` : name;
      const abs = path.join(ws, rel);
      const st = fs.lstatSync(abs);
      if (st.isSymbolicLink()) {
        tree.set(rel, { kind: 'symlink', target: fs.readlinkSync(abs) });
      } else if (st.isDirectory()) {
        fs.chmodSync(abs, 0o755);
        tree.set(rel, { kind: 'dir', mode: 0o755 });
        visit(rel);
      } else {
        const mode = rel === 'd1/a' ? 0o755 : 0o644;
        fs.chmodSync(abs, mode);
        tree.set(rel, { kind: 'file', data: fs.readFileSync(abs), mode });
      }
    }
  };
  visit('');
  return { ws, tree };
}

// ---- known deviations from Linux -------------------------------------------

/**
 * Cases where the overlay's errno differs from Linux's, by design of the
 * direct API or as a low-severity bug; see the `known deviations` tests at
 * the bottom. Under FUSE none of them is reachable: the kernel walks the
 * directories of a path (and does rename's ancestor checks) before it calls
 * the overlay. They are tolerated unless COWFS_PROP_STRICT=1, and counted.
 */
type Deviation = 'prefix-not-dir' | 'rename-into-self' | 'rename-onto-ancestor' | 'noreplace-order';
const TOLERATED: Record<Deviation, { linux: Errno[]; overlay: (Errno | 'ok')[] }> = {
  /**
   * A non-directory among the directories of a path: Linux ENOTDIR, the
   * overlay ENOENT (create, mkdir, symlink and a rename's target get ENOTDIR
   * right when it is the direct parent; lookups never do).
   */
  'prefix-not-dir': { linux: ['ENOTDIR'], overlay: ['ENOENT'] },
  /**
   * rename(x, x/…) where x/… has no parent directory (x is a file, or a
   * directory without that subdirectory): Linux ENOTDIR or ENOENT from the
   * walk to the new parent, the overlay EINVAL ("into itself") first.
   */
  'rename-into-self': { linux: ['ENOENT', 'ENOTDIR'], overlay: ['EINVAL'] },
  /** rename(d/f, d): Linux ENOTEMPTY (the target is an ancestor of the source), the overlay EISDIR. */
  'rename-onto-ancestor': { linux: ['ENOTEMPTY'], overlay: ['EISDIR'] },
  /**
   * rename(x, x, RENAME_NOREPLACE) and rename(d, d/existing, RENAME_NOREPLACE):
   * Linux EEXIST (the target exists), the overlay success (a no-op) and EINVAL.
   */
  'noreplace-order': { linux: ['EEXIST'], overlay: ['ok', 'EINVAL'] },
};
const deviationsSeen = new Map<Deviation, number>();

// ---- one sequence -----------------------------------------------------------

type OpName = 'write' | 'overwrite' | 'truncate' | 'unlink' | 'mkdir' | 'rmdir' | 'rename' | 'symlink' | 'chmod'
  | 'commit' | 'createAgent';

const WEIGHTS: Record<OpName, number> = {
  write: 16, overwrite: 9, truncate: 5, unlink: 8, mkdir: 9, rmdir: 6, rename: 18, symlink: 4, chmod: 5,
  commit: 6, createAgent: 3,
};

const stats = { sequences: 0, steps: 0, byCode: new Map<string, number>(), maxDepth: 0, replays: 0 };

async function runSequence(seed: number): Promise<void> {
  const rng = new Rng(seed);
  const { ws, tree: wsTree } = buildWorkspace();
  const wsBefore = diskListing(ws);
  const stateDir = path.join(tempDir('cowfs-prop-state-'), 'state');
  let ov = await Overlay.open({ workspace: ws, stateDir });
  const trace: string[] = [];
  const agents = new Map<string, MAgent>();
  const remembered: { agent: string; seq: number; snap: Record<string, string>; step: number }[] = [];
  let agentSeq = 0;

  const fail = (msg: string): never => {
    throw new Error(`seed ${seed}: ${msg}\n(rerun: COWFS_PROP_SEED=${seed} COWFS_PROP_RUNS=1)\nlast operations:\n  ${trace.slice(-25).join('\n  ')}`);
  };

  const newAgent = (parent: MAgent | null): MAgent => {
    const name = parent ? `${parent.name.split('-')[0]}-${agentSeq++}` : `r${agentSeq++}`;
    trace.push(`createAgent ${name} parent=${parent?.name ?? 'workspace'}`);
    ov.createAgent(name, parent?.name ?? null);
    const base = parent ? parent.head : wsTree;
    const a: MAgent = { name, parent: parent?.name ?? null, depth: parent ? parent.depth + 1 : 1, work: new Map(base), head: new Map(base) };
    agents.set(name, a);
    stats.maxDepth = Math.max(stats.maxDepth, a.depth);
    return a;
  };

  const commit = (a: MAgent) => {
    trace.push(`${a.name}: commit`);
    ov.commit(a.name, `commit ${trace.length}`);
    a.head = new Map(a.work);
  };

  const check = (a: MAgent, what: string) => {
    const tree = ov.tree(a.name);
    const msg = `${what}: tree of ${a.name} differs from the model`;
    same(snapshot(tree.tree, ov), modelSnapshot(a.work), fail, msg);
    // What the adapter sees: readdir of every directory and getattr of every path.
    same(adapterView(tree, a.work), modelAdapterView(a.work), fail, msg);
  };

  /** Runs `fn` expecting Linux's `linux` outcome (undefined: success); `dev` names a tolerated deviation. */
  const attempt = (desc: string, linux: Errno | undefined, fn: () => void, dev?: Deviation): boolean => {
    trace.push(`${desc} → expect ${linux ?? 'ok'}`);
    let got: Errno | undefined;
    try {
      fn();
    } catch (err) {
      if (!(err instanceof FsError)) fail(`${desc}: threw ${(err as Error).stack ?? err}`);
      got = (err as FsError).code;
    }
    stats.byCode.set(got ?? 'ok', (stats.byCode.get(got ?? 'ok') ?? 0) + 1);
    if (got === linux) return got === undefined;
    if (dev && linux && !STRICT && TOLERATED[dev].linux.includes(linux) && TOLERATED[dev].overlay.includes(got ?? 'ok')) {
      deviationsSeen.set(dev, (deviationsSeen.get(dev) ?? 0) + 1);
      return false;
    }
    return fail(`${desc}: expected ${linux ?? 'success'}, got ${got ?? 'success'}`);
  };

  const randomPath = (): string => {
    const depth = rng.pick([1, 1, 2, 2, 2, 3]);
    const parts: string[] = [rng.pick(TOP)];
    for (let i = 1; i < depth; i++) parts.push(rng.pick(SUB));
    return parts.join('/');
  };

  /** A name in an existing directory of the tree (often free: creations, rename targets). */
  const freshPath = (t: MTree): string => {
    const dirs = ['', ...[...t].filter(([, n]) => n.kind === 'dir').map(([p]) => p)];
    const dir = rng.pick(dirs);
    return dir === '' ? rng.pick(TOP) : `${dir}/${rng.pick(SUB)}`;
  };

  /** A path: one that exists in the agent's tree (of the wanted kind), a name in an existing directory, or anything. */
  const pickPath = (t: MTree, kinds?: MNode['kind'][], pExisting = 0.5, pFresh = 0.3): string => {
    const r = rng.next();
    if (r < pExisting) {
      const xs = [...t].filter(([, n]) => !kinds || kinds.includes(n.kind)).map(([p]) => p);
      if (xs.length) return rng.pick(xs);
    }
    if (r < pExisting + pFresh) return freshPath(t);
    return randomPath();
  };

  const content = (): Buffer => {
    if (rng.chance(0.01)) return Buffer.alloc(70 * 1024 + rng.int(100), `big${rng.int(3)}`); // a blob stored as a file
    return Buffer.from(rng.pick(['', 'x', 'hello\n', 'same content\n', `v${rng.int(50)}\n`, `${'line\n'.repeat(rng.int(5))}`]));
  };

  /** The deviation a prefix error would fall under: a non-directory above the parent. */
  const prefixDev = (t: MTree, p: string): Deviation | undefined => {
    const e = prefixErr(t, p);
    return e === 'ENOTDIR' && prefixErr(t, parentOf(p)) === 'ENOTDIR' ? 'prefix-not-dir' : undefined;
  };

  const step = (a: MAgent, op: OpName) => {
    const t = a.work;
    const tree = ov.tree(a.name);
    switch (op) {
      case 'write': {
        const p = pickPath(t, ['file'], 0.4, 0.45);
        const data = content();
        const mode = rng.pick([0o644, 0o600, 0o755]);
        const n = t.get(p);
        const exp = prefixErr(t, p) ?? (n?.kind === 'dir' ? 'EISDIR' : n?.kind === 'symlink' ? 'ELOOP' : undefined);
        if (attempt(`${a.name}: write ${p} (${data.length} bytes, ${mode.toString(8)})`, exp, () => writeFile(tree, p, data, mode), prefixDev(t, p))) {
          t.set(p, { kind: 'file', data, mode: n?.kind === 'file' ? n.mode : mode });
        }
        break;
      }
      case 'overwrite': {
        const p = pickPath(t, ['file']);
        const n = t.get(p);
        const data = Buffer.from(rng.pick(['X', 'YY', 'patch', '\n']));
        const off = n?.kind === 'file' ? rng.int(n.data.length + 3) : 0;
        const exp = prefixErr(t, p) ?? (!n ? 'ENOENT' : n.kind === 'dir' ? 'EISDIR' : n.kind === 'symlink' ? 'ELOOP' : undefined);
        const ok = attempt(`${a.name}: overwrite ${p} at ${off} with ${JSON.stringify(data.toString())}`, exp, () => {
          const fh = tree.open(p, O_RDWR);
          try {
            tree.write(fh, data, data.length, off);
          } finally {
            tree.release(fh);
          }
        }, prefixErr(t, p) === 'ENOTDIR' ? 'prefix-not-dir' : undefined);
        if (ok && n?.kind === 'file') t.set(p, { ...n, data: overwrite(n.data, off, data) });
        break;
      }
      case 'truncate': {
        const p = pickPath(t, ['file']);
        const n = t.get(p);
        const size = n?.kind === 'file' ? rng.int(n.data.length + 4) : rng.int(4);
        const exp = prefixErr(t, p) ?? (!n ? 'ENOENT' : n.kind === 'dir' ? 'EISDIR' : n.kind === 'symlink' ? 'EINVAL' : undefined);
        const dev = prefixErr(t, p) === 'ENOTDIR' ? 'prefix-not-dir' : undefined;
        if (attempt(`${a.name}: truncate ${p} to ${size}`, exp, () => tree.truncate(p, size), dev) && n?.kind === 'file') {
          t.set(p, { ...n, data: resize(n.data, size) });
        }
        break;
      }
      case 'unlink': {
        const p = pickPath(t, ['file', 'symlink']);
        const n = t.get(p);
        const exp = prefixErr(t, p) ?? (!n ? 'ENOENT' : n.kind === 'dir' ? 'EISDIR' : undefined);
        const dev = prefixErr(t, p) === 'ENOTDIR' ? 'prefix-not-dir' : undefined;
        if (attempt(`${a.name}: unlink ${p}`, exp, () => tree.unlink(p), dev)) t.delete(p);
        break;
      }
      case 'mkdir': {
        const p = pickPath(t, undefined, 0.2, 0.6);
        const mode = rng.pick([0o755, 0o700, 0o775]);
        const exp = prefixErr(t, p) ?? (t.has(p) ? 'EEXIST' : undefined);
        if (attempt(`${a.name}: mkdir ${p} ${mode.toString(8)}`, exp, () => tree.mkdir(p, mode, 0, 0), prefixDev(t, p))) {
          t.set(p, { kind: 'dir', mode });
        }
        break;
      }
      case 'rmdir': {
        const p = pickPath(t, ['dir']);
        const n = t.get(p);
        const exp = prefixErr(t, p)
          ?? (!n ? 'ENOENT' : n.kind !== 'dir' ? 'ENOTDIR' : childrenOf(t, p).length > 0 ? 'ENOTEMPTY' : undefined);
        const dev = prefixErr(t, p) === 'ENOTDIR' ? 'prefix-not-dir' : undefined;
        if (attempt(`${a.name}: rmdir ${p}`, exp, () => tree.rmdir(p), dev)) t.delete(p);
        break;
      }
      case 'rename': {
        const from = pickPath(t, rng.chance(0.5) ? ['dir'] : undefined, 0.8, 0.1);
        const to = pickPath(t, rng.chance(0.3) ? ['dir'] : undefined, 0.35, 0.45);
        const src = t.get(from);
        const dst = t.get(to);
        const flags = rng.chance(0.15) ? RENAME_NOREPLACE : 0;
        let exp: Errno | undefined;
        let dev: Deviation | undefined;
        const pf = prefixErr(t, from);
        const pt = prefixErr(t, to);
        if (pf || pt) {
          exp = pf ?? pt;
          if (!pf && src && isWithin(to, from)) dev = 'rename-into-self';
          else if (exp === 'ENOTDIR') dev = 'prefix-not-dir';
        } else if (!src) exp = 'ENOENT';
        else if (flags && dst) {
          exp = 'EEXIST';
          if (isWithin(to, from)) dev = 'noreplace-order';
        } else if (to !== from && isWithin(to, from)) exp = 'EINVAL';
        else if (from !== to && isWithin(from, to)) { exp = 'ENOTEMPTY'; dev = 'rename-onto-ancestor'; }
        else if (from === to) exp = undefined;
        else if (dst) {
          if (src.kind === 'dir' && dst.kind !== 'dir') exp = 'ENOTDIR';
          else if (src.kind !== 'dir' && dst.kind === 'dir') exp = 'EISDIR';
          else if (dst.kind === 'dir' && childrenOf(t, to).length > 0) exp = 'ENOTEMPTY';
        }
        const desc = `${a.name}: rename ${from} → ${to}${flags ? ' NOREPLACE' : ''}`;
        if (attempt(desc, exp, () => tree.rename(from, to, flags), dev) && from !== to) {
          const moved = [...t].filter(([q]) => isWithin(q, from));
          for (const q of [...t.keys()]) if (isWithin(q, to)) t.delete(q);
          for (const [q] of moved) t.delete(q);
          for (const [q, n] of moved) t.set(reroot(q, from, to), n);
        }
        break;
      }
      case 'symlink': {
        const p = pickPath(t, undefined, 0.2, 0.6);
        const target = rng.pick(['a', '../a', 'd1/s', 'nowhere', '/abs/target']);
        const exp = prefixErr(t, p) ?? (t.has(p) ? 'EEXIST' : undefined);
        if (attempt(`${a.name}: symlink ${p} -> ${target}`, exp, () => tree.symlink(target, p, 0, 0), prefixDev(t, p))) {
          t.set(p, { kind: 'symlink', target });
        }
        break;
      }
      case 'chmod': {
        const p = pickPath(t, ['file', 'dir']);
        const n = t.get(p);
        // chmod follows symlinks: the kernel never hands the overlay a chmod of one.
        if (n?.kind === 'symlink') break;
        const mode = rng.pick([0o600, 0o644, 0o700, 0o755, 0o711]);
        const exp = prefixErr(t, p) ?? (!n ? 'ENOENT' : undefined);
        const dev = prefixErr(t, p) === 'ENOTDIR' ? 'prefix-not-dir' : undefined;
        if (attempt(`${a.name}: chmod ${p} ${mode.toString(8)}`, exp, () => tree.chmod(p, mode), dev) && n) {
          t.set(p, { ...n, mode } as MNode);
        }
        break;
      }
      case 'commit':
        commit(a);
        break;
      case 'createAgent': {
        if (agents.size >= MAX_AGENTS) break;
        const parents = [...agents.values()];
        const child = newAgent(rng.chance(0.15) ? null : rng.pick(parents));
        check(child, 'new agent');
        break;
      }
    }
  };

  try {
    newAgent(null);
    newAgent(null);
    for (let i = 0; i < STEPS; i++) {
      // At least three levels: commit the deepest agent and give it a child, twice, early on.
      if (i === 6 || i === 18) {
        const deepest = [...agents.values()].sort((x, y) => y.depth - x.depth)[0]!;
        commit(deepest);
        check(newAgent(deepest), 'new agent');
      }
      const list = [...agents.values()];
      const a = rng.pick(list);
      const op = rng.weighted(WEIGHTS);
      step(a, op);
      stats.steps++;
      check(a, `step ${i}`);
      if (i % 10 === 9) for (const b of agents.values()) check(b, `step ${i} (all agents)`);
      if (rng.chance(0.12)) {
        const b = rng.pick([...agents.values()]);
        remembered.push({ agent: b.name, seq: ov.log.head, snap: modelSnapshot(b.work), step: i });
      }
    }

    // Replay to remembered points, and to the end.
    for (const r of remembered) {
      same(snapshot(ov.replay(r.agent, r.seq), ov), r.snap, fail, `replay of ${r.agent} to event ${r.seq} (after step ${r.step}) differs from the model`);
      stats.replays++;
    }
    const checkAll = (when: string) => {
      for (const a of agents.values()) {
        check(a, when);
        same(snapshot(ov.replay(a.name), ov), modelSnapshot(a.work), fail, `${when}: replay of ${a.name} to the end differs from the model`);
        same(snapshot(ov.commitView(ov.agent(a.name).head), ov), modelSnapshot(a.head), fail, `${when}: head of ${a.name} differs from the model`);
      }
    };
    checkAll('end');
    expect(diskListing(ws), `seed ${seed}: the workspace on disk changed`).toEqual(wsBefore);

    // Reopen: the same trees, heads and replays.
    const head = ov.log.head;
    await ov.close();
    ov = await Overlay.open({ workspace: ws, stateDir });
    expect(ov.log.head).toBe(head);
    expect(ov.agents().map((a) => a.name).sort()).toEqual([...agents.keys()].sort());
    checkAll('after reopening');
    expect(diskListing(ws), `seed ${seed}: the workspace on disk changed`).toEqual(wsBefore);
    stats.sequences++;
  } finally {
    await ov.close();
    removeTempDirs();
  }
}

describe('property: random operation sequences against a model', () => {
  afterAll(() => {
    removeTempDirs();
    const codes = [...stats.byCode].sort().map(([c, n]) => `${c}=${n}`).join(' ');
    const devs = [...deviationsSeen].map(([d, n]) => `${d}=${n}`).join(' ') || 'none';
    console.log(
      `property: ${stats.sequences}/${RUNS} sequences, ${stats.steps} steps, max depth ${stats.maxDepth}, `
      + `${stats.replays} replays to remembered points; outcomes ${codes}; tolerated deviations ${devs}`,
    );
  });

  for (let i = 0; i < RUNS; i++) {
    const seed = (FIRST_SEED + i * 7919) >>> 0;
    it(`sequence with seed ${seed}`, () => runSequence(seed));
  }
});

// ---- minimal cases of what the property test found --------------------------


const names = (t: TreeOps, p: string) => t.readdir(p).map((d) => d.name).sort();

async function oneAgent(files: Record<string, string>) {
  const ws = makeWorkspace(files);
  const ov = await Overlay.open({ workspace: ws, stateDir: path.join(tempDir('cowfs-prop-state-'), 'state') });
  ov.createAgent('a', null);
  return { ov, t: ov.tree('a') };
}

/**
 * Bugs in src/overlay the property test found (a third of the default run's
 * sequences failed on them, e.g. seeds 20240601, 20256439, 20272277; fixed
 * in c2e78ee). Each is the smallest sequence that showed one, kept as a
 * regression test.
 */
describe('regressions: src bugs the property test found', () => {
  afterAll(removeTempDirs);

  it('readdir lists the own entries of a directory under a renamed inherited one (TreeView.list)', async () => {
    const { ov, t } = await oneAgent({ 'd/s/x': 'X' });
    try {
      t.rename('d', 'e', 0);
      t.mkdir('e/s/n', 0o755, 0, 0);
      expect(errnoOf(() => t.getattr('e/s/n'))).toBeUndefined();
      expect(names(t, 'e/s')).toEqual(['n', 'x']); // was: ['x']
    } finally {
      await ov.close();
    }
  });

  it('a directory copied up inside a renamed one keeps its inherited content (TreeView.list)', async () => {
    const { ov, t } = await oneAgent({ 'd/sub/x': 'X' });
    try {
      t.rename('d', 'e', 0);
      t.chmod('e/sub', 0o700);
      expect(names(t, 'e/sub')).toEqual(['x']); // was: []
      expect(errnoOf(() => t.rmdir('e/sub'))).toBe('ENOTEMPTY'); // was: removed a non-empty directory
    } finally {
      await ov.close();
    }
  });

  it('a directory made inside an opaque one shows nothing from below (TreeView.list)', async () => {
    const { ov, t } = await oneAgent({ 'x/y/z': 'Z' });
    try {
      t.unlink('x/y/z');
      t.rmdir('x/y');
      t.rmdir('x');
      t.mkdir('x', 0o755, 0, 0);
      t.mkdir('x/y', 0o755, 0, 0);
      expect(errnoOf(() => t.getattr('x/y/z'))).toBe('ENOENT');
      expect(names(t, 'x/y')).toEqual([]); // was: ['z'], a name that does not resolve
      expect(errnoOf(() => t.rmdir('x/y'))).toBeUndefined(); // was: ENOTEMPTY
    } finally {
      await ov.close();
    }
  });

  it('moving a directory copies no phantom entries into the layer (Layer.apply move)', async () => {
    const { ov, t } = await oneAgent({ 'd/s/x': 'X' });
    try {
      t.mkdir('d/s/n', 0o755, 0, 0);
      t.rename('d', 'e', 0);
      // Layer.subtree returned 'd/s', which only exists in the children index; the move set 'e/s' → undefined.
      expect([...t.layer.entriesList()].filter(([, e]) => e === undefined).map(([p]) => p)).toEqual([]); // was: ['e/s']
      expect(ov.usage('a')).toEqual({ changed: 1, bytes: 0 }); // was: TypeError (reading 'kind')
    } finally {
      await ov.close();
    }
  });
});

/** Found reading the code while writing the model (fixed in c2e78ee): the direct API followed a workspace symlink in the middle of a path. */
describe('regressions: src bugs found by review', () => {
  afterAll(removeTempDirs);

  it('a workspace symlink in the middle of a path is not followed out of the workspace (Workspace.lookup)', async () => {
    const outside = tempDir('cowfs-outside-');
    fs.writeFileSync(path.join(outside, 'secret'), 'SECRET');
    const { ov, t } = await oneAgent({ 'in/x': 'X', 'out': `->${outside}` });
    try {
      // An own symlink is never followed (ENOENT); lstat() of '<ws>/out/secret' followed the workspace's one.
      t.symlink('in', 'own', 0, 0);
      expect(errnoOf(() => t.getattr('own/x'))).toBe('ENOENT');
      expect(['ENOENT', 'ENOTDIR']).toContain(errnoOf(() => t.getattr('out/secret'))); // was: the stat of a file outside
      expect(['ENOENT', 'ENOTDIR']).toContain(errnoOf(() => t.open('out/secret', 0))); // was: read "SECRET"
    } finally {
      await ov.close();
    }
  });
});

/** Deviations from Linux's errno that the property test tolerates (TOLERATED); unreachable under FUSE. */
describe('known deviations from Linux (expected to fail; flip to it() when fixed)', () => {
  afterAll(removeTempDirs);

  it.fails('prefix-not-dir: a file among the directories of a path is ENOTDIR', async () => {
    const { ov, t } = await oneAgent({ f: 'x' });
    try {
      expect(errnoOf(() => t.unlink('f/x'))).toBe('ENOTDIR');
    } finally {
      await ov.close();
    }
  });

  it.fails('rename-into-self: rename(f, f/x) of a file is ENOTDIR', async () => {
    const { ov, t } = await oneAgent({ f: 'x' });
    try {
      expect(errnoOf(() => t.rename('f', 'f/x', 0))).toBe('ENOTDIR');
    } finally {
      await ov.close();
    }
  });

  it.fails('rename-onto-ancestor: rename(d/f, d) is ENOTEMPTY', async () => {
    const { ov, t } = await oneAgent({ 'd/f': 'x' });
    try {
      expect(errnoOf(() => t.rename('d/f', 'd', 0))).toBe('ENOTEMPTY');
    } finally {
      await ov.close();
    }
  });

  it.fails('noreplace-order: rename(f, f, RENAME_NOREPLACE) is EEXIST', async () => {
    const { ov, t } = await oneAgent({ f: 'x' });
    try {
      expect(errnoOf(() => t.rename('f', 'f', RENAME_NOREPLACE))).toBe('EEXIST');
    } finally {
      await ov.close();
    }
  });
});
