/**
 * FUSE mounts for the test suite.
 *
 * - A mount is always served by a CHILD process (`startMountServer`), never
 *   by the vitest process: the test process reads the mounts, and a process
 *   that reads a mount it serves deadlocks (FUSE-NOTES).
 * - Nothing is left mounted: `MountServer.stop()` unmounts (lazily if busy)
 *   and, if the server will not go, kills it by its pid and cleans up after
 *   it; `cleanupStaleMounts(prefix)` frees whatever a crashed run left.
 *
 * Child entries are TypeScript files (test/fixtures/serve-*.ts). There is no
 * TS runner in the project and the build (tsc -p tsconfig.json) covers src/
 * and bench/ only, so `compileForNode` transpiles an entry and every
 * relative module it imports (fixtures, and the adapter from src/) with the
 * TypeScript compiler into node_modules/.cache/cowfs-test-build/, keeping
 * the project's layout. Always from the current sources: no stale dist/,
 * no build step to remember; unchanged files are not transpiled again.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { AdapterStats, MountOptions } from '../../src/fuse/adapter-common.js';
import {
  abortConnection, connectionOf, ensureFusectl, fuseMountsAt, fuseMountsUnder, lazyUnmount, waitingOn,
  type FuseMount,
} from '../../src/fuse/mount-table.js';
import type { PassthroughOptions } from '../fixtures/passthrough-tree.js';

export { fuseMountsUnder, type FuseMount };

const ROOT = path.resolve(import.meta.dirname, '../..');
// Inside this checkout (node_modules may be shared with other checkouts): dist/ is ignored by git.
const BUILD = path.join(ROOT, 'dist/test-build');

// ------------------------------------------------------------------ compile

/**
 * Transpiles `entry` (a .ts file of this project) and the relative imports it
 * reaches into BUILD; returns the .js path to run with node. Type errors are
 * not checked here (`npx tsc` does that for src/).
 */
export async function compileForNode(entry: string): Promise<string> {
  // Loaded here, not at the top: the global setup imports this module for the cleanup alone.
  const { default: ts } = await import('typescript');
  const start = path.resolve(ROOT, entry);
  fs.mkdirSync(BUILD, { recursive: true });
  const pkg = path.join(BUILD, 'package.json');
  if (!fs.existsSync(pkg)) fs.writeFileSync(pkg, '{"type":"module"}\n');
  const seen = new Set<string>();
  const queue = [start];
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    const text = fs.readFileSync(file, 'utf8');
    for (const ref of ts.preProcessFile(text, true, true).importedFiles) {
      const spec = ref.fileName;
      if (!spec.startsWith('./') && !spec.startsWith('../')) continue;
      const target = path.resolve(path.dirname(file), spec).replace(/\.js$/, '.ts');
      if (fs.existsSync(target) && target.startsWith(`${ROOT}/`)) queue.push(target);
    }
    const out = outputOf(file);
    const srcTime = fs.statSync(file).mtimeMs;
    const outTime = fs.statSync(out, { throwIfNoEntry: false })?.mtimeMs ?? -1;
    if (outTime >= srcTime) continue;
    const js = ts.transpileModule(text, {
      fileName: file,
      compilerOptions: {
        module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, inlineSourceMap: true, inlineSources: true,
      },
    }).outputText;
    fs.mkdirSync(path.dirname(out), { recursive: true });
    const tmp = `${out}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, js);
    fs.renameSync(tmp, out);
  }
  return outputOf(start);
}

function outputOf(tsFile: string): string {
  return path.join(BUILD, path.relative(ROOT, tsFile)).replace(/\.ts$/, '.js');
}

// ------------------------------------------------------------------- server

export interface MountServer {
  readonly pid: number;
  readonly mountpoint: string;
  /** `major:minor` of the mount (the minor is its FUSE connection). */
  readonly device: string;
  /** The -o string the adapter gave libfuse. */
  readonly options: string;
  /** The adapter's request counters, asked of the server. */
  stats(): Promise<AdapterStats>;
  /** Has the mount drop its kernel cache (MountHandle.dropKernelCache); the entries it invalidated. */
  dropKernelCache(): Promise<number>;
  /** What the server wrote to stderr so far (adapter log lines, libfuse messages). */
  stderr(): string;
  /** Sends a signal to the server process (by its pid), e.g. SIGKILL or SIGSTOP in tests of cleanup. */
  signal(sig: NodeJS.Signals): void;
  /** Resolves once the server process has exited (its end of the FUSE connection is closed then). */
  readonly exited: Promise<void>;
  /** Unmounts and ends the server; never leaves the mount behind, whatever state the server is in. */
  stop(): Promise<void>;
}

export interface StartOptions {
  /** The child entry, a .ts file (relative to the project root or absolute). */
  entry: string;
  args?: string[];
  /** The mountpoint the entry mounts (for the cleanup if it dies). */
  mountpoint: string;
  readyTimeoutMs?: number;
}

/** Starts a child process that mounts a tree, and resolves once the mount answers. */
export async function startMountServer(opts: StartOptions): Promise<MountServer> {
  const script = await compileForNode(opts.entry);
  const child = spawn(process.execPath, ['--enable-source-maps', script, ...(opts.args ?? [])], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  child.stdin!.on('error', () => undefined); // EPIPE once it exited: stop() copes
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => { err += d; });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const lines = lineReader(child);

  const ready = await Promise.race([
    lines.next('ready'),
    exited.then(() => null),
    sleep(opts.readyTimeoutMs ?? 20_000).then(() => undefined),
  ]);
  if (!ready) {
    const why = ready === null ? `exited with ${child.exitCode ?? child.signalCode}` : 'did not become ready';
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
    await cleanupMountsAt(opts.mountpoint);
    throw new Error(`mount server for ${opts.mountpoint} ${why}:\n${err}`);
  }
  const info = ready as { pid: number; mountpoint: string; device: string; options: string };
  const alive = () => child.exitCode === null && child.signalCode === null;
  /** Sends a command, resolves with the server's answer (the line of that event). */
  const ask = async (cmd: string, event: string): Promise<unknown> => {
    const answer = lines.next(event);
    child.stdin!.write(`${cmd}\n`);
    const r = await Promise.race([answer, sleep(10_000).then(() => undefined)]);
    if (!r) throw new Error(`mount server did not answer ${cmd}`);
    return r;
  };

  let stopping: Promise<void> | null = null;
  return {
    pid: child.pid!,
    mountpoint: info.mountpoint,
    device: info.device,
    options: info.options,
    stderr: () => err,
    exited,
    signal: (sig) => {
      if (alive()) child.kill(sig);
    },
    async stats() {
      return (await ask('stats', 'stats') as { stats: AdapterStats }).stats;
    },
    async dropKernelCache() {
      return (await ask('drop', 'dropped') as { entries: number }).entries;
    },
    stop() {
      stopping ??= (async () => {
        if (alive()) {
          child.kill('SIGCONT'); // a stopped server cannot unmount itself
          child.stdin!.end('unmount\n');
          const done = await Promise.race([exited.then(() => true), sleep(10_000).then(() => false)]);
          if (!done) {
            child.kill('SIGKILL');
            await exited;
          }
        }
        // Whatever the server managed, the mount must be gone (only ours: by device).
        for (const m of fuseMountsAt(info.mountpoint)) {
          if (m.device === info.device) await cleanupMount(m, true);
        }
      })();
      return stopping;
    },
  };
}

/** A PassthroughTree over `source`, mounted at `mountpoint` by a child process. */
export function startPassthroughServer(
  source: string,
  mountpoint: string,
  opts: { mount?: Omit<MountOptions, 'logger'>; fixture?: PassthroughOptions } = {},
): Promise<MountServer> {
  return startMountServer({
    entry: 'test/fixtures/serve-passthrough.ts',
    args: [JSON.stringify({ source, mountpoint, mount: opts.mount, fixture: opts.fixture })],
    mountpoint,
  });
}

/** Runs `fn` with a started server and stops it afterwards, also when `fn` throws. */
export async function withMountServer<T>(start: () => Promise<MountServer>, fn: (s: MountServer) => Promise<T>): Promise<T> {
  const s = await start();
  try {
    return await fn(s);
  } finally {
    await s.stop();
  }
}

/** JSON lines from the child's stdout, handed to whoever waits for an event. */
function lineReader(child: ChildProcess): { next(event: string): Promise<unknown> } {
  const waiting: { event: string; resolve: (v: unknown) => void }[] = [];
  let buf = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      let msg: { event?: string };
      try {
        msg = JSON.parse(line) as { event?: string };
      } catch {
        continue;
      }
      const w = waiting.findIndex((x) => x.event === msg.event);
      if (w >= 0) waiting.splice(w, 1)[0]!.resolve(msg);
    }
  });
  return { next: (event) => new Promise((resolve) => waiting.push({ event, resolve })) };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}

// ------------------------------------------------------------------ cleanup

/**
 * Asks the kernel for the filesystem's statistics from a child process (so
 * a hung server cannot hang us), killed after `timeoutMs`:
 * `alive` (answered), `dead` (ENOTCONN: its server is gone), `hung`.
 */
export function probeMount(mountpoint: string, timeoutMs = 3000): Promise<'alive' | 'dead' | 'hung'> {
  return new Promise((resolve) => {
    execFile('stat', ['-f', '-c', '%T', '--', mountpoint], { timeout: timeoutMs, killSignal: 'SIGKILL' }, (err, _out, stderr) => {
      if (!err) resolve('alive');
      else if ((err as { killed?: boolean }).killed) resolve('hung');
      else if (/not connected/i.test(stderr)) resolve('dead');
      else resolve('alive');
    });
  });
}

/**
 * Frees one mount: lazy unmount (works while busy; no canonicalization, so
 * it never stats a hung mount), then, if requests still wait on its
 * connection (or `stuck`), abort the connection through fusectl: every
 * waiting call fails with ENOTCONN and its process can exit.
 */
async function cleanupMount(m: FuseMount, stuck: boolean): Promise<void> {
  const n = connectionOf(m);
  await ensureFusectl();
  if (stuck) await abortConnection(n);
  await lazyUnmount(m.mountpoint);
  if ((waitingOn(n) ?? 0) > 0) await abortConnection(n);
  if (fuseMountsAt(m.mountpoint).some((x) => x.device === m.device)) {
    await abortConnection(n);
    await lazyUnmount(m.mountpoint);
  }
}

async function cleanupMountsAt(mountpoint: string): Promise<void> {
  for (const m of fuseMountsAt(path.resolve(mountpoint)).reverse()) await cleanupMount(m, false);
}

/**
 * Lazily unmounts every FUSE mount whose mountpoint starts with `prefix` (a
 * plain string prefix: `/tmp/cowfs-test-` covers every test root), deepest
 * first, aborting the connection of any that stays stuck. With
 * `onlyDead`, mounts whose server still answers are left alone: that is
 * what the global setup uses, since another test run on the same machine
 * may own live mounts under the same prefix. Resolves to the mountpoints it
 * freed.
 */
export async function cleanupStaleMounts(prefix: string, opts: { onlyDead?: boolean } = {}): Promise<string[]> {
  const freed: string[] = [];
  for (const m of fuseMountsUnder(prefix)) {
    let state: 'alive' | 'dead' | 'hung' | 'any' = 'any';
    if (opts.onlyDead) {
      state = await probeMount(m.mountpoint);
      if (state === 'alive') continue;
    }
    await cleanupMount(m, state === 'hung');
    freed.push(m.mountpoint);
  }
  return freed;
}
