/**
 * `npm run bench [-- --quick] [-- --profile] [-- --runs N] [-- --only create,read,write,parallel]`
 *
 * cowfs against the native disk and its peers, measured side by side in one
 * run over one realistic workspace (bench/lib/workspace.ts): creating
 * isolated workspaces (time, disk), read-heavy and write-heavy work inside
 * one, and 10 agents at once. Every number is a median over interleaved
 * rounds (the setups take turns within a round); ratios are to the native
 * disk in the same run, as slowdowns (time / native time, or native rate /
 * rate): above 1 is slower than native.
 *
 * Prints the tables and writes them with the machine's description into
 * bench/RESULTS.md (its own block per mode; text outside the blocks is kept).
 * Every mount and process it starts lives under /var/tmp/cowfs-bench-run and
 * is ended on exit, failure and ^C (bench/lib/cleanup.ts).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cleanupAll, endLeftDaemons, installHandlers, interrupted, mountsUnder, onCleanup, setMountRoot, unmountAllUnder } from './lib/cleanup.js';
import { CowfsDaemon, ROOT } from './lib/cowfs.js';
import { copyLine, diskKiB, OverlayPool, removeCopies, type CopyKind } from './lib/peers.js';
import { hotSpots } from './lib/profile.js';
import { cowfsProvider, nativeProvider, overlayProvider, SETUPS, type Provider, type SetupName, type Views } from './lib/setups.js';
import { dropCaches, q, sh, timed } from './lib/sh.js';
import { fmtBytes, fmtRatio, fmtSeconds, mdTable, median, spread } from './lib/stats.js';
import { prepareWorkspace, PROJECT, type Workspace } from './lib/workspace.js';

// ------------------------------------------------------------------ options

interface Options {
  quick: boolean;
  runs: number;
  profile: boolean;
  only: Set<string> | undefined;
  writeResults: boolean;
  runsGiven: boolean;
}

function parseArgs(argv: string[]): Options {
  const o: Options = { quick: false, runs: 0, profile: false, only: undefined, writeResults: true, runsGiven: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--quick') o.quick = true;
    else if (a === '--profile') o.profile = true;
    else if (a === '--no-results') o.writeResults = false;
    else if (a === '--runs') o.runs = Number(argv[++i]);
    else if (a.startsWith('--runs=')) o.runs = Number(a.slice(7));
    else if (a === '--only') o.only = new Set(argv[++i]!.split(','));
    else if (a.startsWith('--only=')) o.only = new Set(a.slice(7).split(','));
    else if (a === '--help' || a === '-h') {
      process.stdout.write('usage: npm run bench -- [--quick] [--runs N] [--profile] [--only create,read,write,parallel,profile] [--no-results]\n');
      process.exit(0);
    } else throw new Error(`unknown option ${a} (try --help)`);
  }
  o.runsGiven = o.runs > 0;
  if (!o.runs) o.runs = o.quick ? 3 : 5;
  if (o.only?.has('profile')) o.profile = true;
  // A partial run does not replace the results of a whole one.
  if (o.only) o.writeResults = false;
  return o;
}

const OPTS = parseArgs(process.argv.slice(2));
const CACHE = '/var/tmp/cowfs-bench-ws';
const RUN = '/var/tmp/cowfs-bench-run';

/**
 * Sizes, and rounds per phase (`--runs N` sets them all). The copies (cp -a…)
 * and the 10-agent work are the slow ones: --quick runs them less often, and
 * the parallel work in 5 views (with 10 it took 3:00 of the 3 minutes allowed).
 */
const SIZES = OPTS.quick
  ? { many: 20, parallel: 5, ddMiB: 128, fioMiB: 32, fioSeconds: 1, copyRuns: 1, coldRuns: 2, writeRuns: 2, parallelRuns: 2 }
  : { many: 100, parallel: 10, ddMiB: 1024, fioMiB: 256, fioSeconds: 3, copyRuns: 2, coldRuns: 5, writeRuns: 5, parallelRuns: 5 };
if (OPTS.runsGiven) Object.assign(SIZES, { copyRuns: OPTS.runs, coldRuns: OPTS.runs, writeRuns: OPTS.runs, parallelRuns: OPTS.runs });

const t0 = Date.now();
function log(msg: string): void {
  const s = Math.round((Date.now() - t0) / 1000);
  process.stderr.write(`[${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}] ${msg}\n`);
}

function wants(phase: string): boolean {
  return !OPTS.only || OPTS.only.has(phase);
}

// ------------------------------------------------------------------ results

type Unit = 'time' | 'rate';

interface Row {
  group: string;
  label: string;
  unit: Unit;
  /** For rate rows: what the rate counts ("IOPS"). For time rows moving `bytes`: MB/s is shown too. */
  rateName?: string;
  bytes?: number;
  samples: Partial<Record<SetupName, number[]>>;
}

interface CreateRow {
  method: string;
  one: number[];
  /** Seconds for `many` workspaces, measured (or estimated, see `manyNote`). */
  many: number[];
  manyNote?: string;
  /** KiB of disk per workspace. */
  diskKiB: number[];
  oneNote?: string;
}

interface Results {
  mode: 'quick' | 'full';
  runs: number;
  sizes: typeof SIZES;
  startedAt: string;
  durationS: number;
  machine: Record<string, string>;
  workspace: Omit<Workspace, 'smallTar'> & { project: string };
  rows: Row[];
  create: CreateRow[];
  memory: { idle?: number; withMany: number[]; hwm?: number; afterParallel?: number };
  checks: Record<string, Record<string, string>>;
  profile?: { counts: Record<string, Record<string, { n: number; ms: number }>>; wall: Record<string, number>; hot: ReturnType<typeof hotSpots> | undefined };
  notes: string[];
}

// ------------------------------------------------------------------ machine

async function out(cmd: string): Promise<string> {
  try {
    return (await sh(cmd)).stdout.trim();
  } catch {
    return '?';
  }
}

async function machineInfo(): Promise<Record<string, string>> {
  const cpu = os.cpus()[0]?.model ?? '?';
  return {
    cpu: `${cpu.trim()} (${os.cpus().length} cores online, nproc ${await out('nproc')})`,
    memory: fmtBytes(os.totalmem()),
    kernel: `${os.type()} ${os.release()}`,
    os: await out(`. /etc/os-release && echo "$PRETTY_NAME"`),
    node: process.version,
    filesystem: await out(`findmnt -no FSTYPE,SOURCE -T ${q(CACHE)}`),
    'fuse-overlayfs': await out('fuse-overlayfs --version 2>&1 | grep -i "fuse-overlayfs:" | head -1'),
    fio: await out('fio --version'),
    git: await out('git --version'),
    cowfs: await out(`cd ${q(ROOT)} && echo "$(git rev-parse --short HEAD)$(git status --porcelain -- src | grep -q . && echo ' + uncommitted changes in src/')"`),
    'cowfs adapter': 'cowfs: libfuse3 (native/, Debian libfuse 3.14), the daemon\'s default, no writeback cache; '
      + 'cowfs-wcache: the same with `cowfs config writeCache on`; cowfs-libfuse2: fuse-native 2.2.6',
    'load average at start': os.loadavg().map((x) => x.toFixed(2)).join(' '),
  };
}

// ------------------------------------------------------------------ preflight

async function preflight(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the bench mounts filesystems and drops caches: run it as root');
  if (!fs.existsSync('/dev/fuse')) throw new Error('no /dev/fuse on this machine');
  const need: string[] = [];
  if ((await sh('command -v fuse-overlayfs', { okCodes: [0, 1] })).code !== 0) need.push('fuse-overlayfs');
  if ((await sh('command -v fio', { okCodes: [0, 1] })).code !== 0) need.push('fio');
  if (need.length) {
    log(`installing ${need.join(', ')} from Debian`);
    if (!fs.existsSync('/var/lib/cowfs-apt-updated')) {
      await sh('apt-get update -qq && touch /var/lib/cowfs-apt-updated', { timeoutMs: 600_000 });
    }
    await sh(`DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ${need.join(' ')} >/dev/null`, { timeoutMs: 600_000 });
  }
  await sh('modprobe overlay 2>/dev/null || true');
  // One bench at a time: a second one would take the first one's mounts for leftovers.
  const lock = `${RUN}.lock`;
  for (;;) {
    try {
      fs.writeFileSync(lock, `${process.pid}\n`, { flag: 'wx' });
      break;
    } catch {
      const holder = Number(fs.readFileSync(lock, 'utf8').trim());
      let alive = false;
      try { process.kill(holder, 0); alive = holder !== process.pid; } catch { /* dead */ }
      if (alive) throw new Error(`another bench (pid ${holder}) is running (${lock})`);
      fs.rmSync(lock, { force: true });
    }
  }
  onCleanup('release the lock', async () => { fs.rmSync(lock, { force: true }); });
  // Only now (the lock is ours) is everything mounted under the run directory ours, also what a
  // previous run that was killed hard left behind.
  setMountRoot(RUN);
  if (fs.existsSync(RUN)) {
    const daemons = await endLeftDaemons(RUN);
    if (daemons.length) log(`ended the cowfs daemons a killed run left: ${daemons.join(' ')}`);
    const left = unmountAllUnder(RUN);
    if (left.length) throw new Error(`cannot free old mounts under ${RUN}: ${left.map((m) => m.mountpoint).join(' ')}`);
    await sh(`rm -rf ${q(RUN)}`, { timeoutMs: 600_000 });
  }
  fs.mkdirSync(RUN, { recursive: true });
}

// ------------------------------------------------------------------ workloads

/** Reading every file: tar's archive goes through a pipe (GNU tar skips reading files when it writes to /dev/null). */
const TAR = `{ tar --warning=no-file-changed -cf - . | cat >/dev/null || [ $? -eq 1 ]; }`;

interface Workload {
  id: string;
  label: string;
  script: string;
  cold: boolean;
}

function readWorkloads(ws: Workspace): Workload[] {
  return [
    { id: 'find', label: '`find . -type f | wc -l`', script: 'find . -type f | wc -l', cold: true },
    { id: 'tar', label: 'read every file (`tar -c . | cat`)', script: TAR, cold: true },
    { id: 'git', label: '`git status`', script: 'git status --porcelain', cold: true },
    {
      id: 'require', label: `\`node -e "require(…)"\` of ${ws.require.length} packages`,
      script: `node -e ${q(`for (const m of ${JSON.stringify(ws.require)}) require(m)`)}`, cold: true,
    },
    {
      id: 'tsc', label: `\`tsc --noEmit -p ${ws.tsconfig}\``,
      script: `node node_modules/typescript/lib/tsc.js --noEmit -p ${q(ws.tsconfig)} --incremental false --skipLibCheck`, cold: false,
    },
  ];
}

/**
 * A source for `dd` whose content no earlier round wrote: a sparse file (its holes read as zeros,
 * as cheaply as /dev/zero, and the same cost for every setup) that starts with `tag`. With
 * /dev/zero every round after the first wrote a file cowfs already stored, and its store compared
 * the two byte for byte after the close, in the daemon's thread, while the next row was measured.
 */
async function newContent(tag: string, bytes: number): Promise<string> {
  const file = path.join(RUN, `dd-source-${tag}`);
  await sh(`rm -f ${q(file)} && truncate -s ${bytes} ${q(file)} && printf %s ${q(tag)} | dd of=${q(file)} conv=notrunc status=none`);
  return file;
}

function rotate<T>(xs: readonly T[], k: number): T[] {
  return xs.map((_, i) => xs[(i + k) % xs.length]!);
}

class Bench {
  readonly results: Results;
  private readonly providers: Provider[];

  constructor(readonly ws: Workspace, readonly daemon: CowfsDaemon, wcache: CowfsDaemon | undefined, libfuse2: CowfsDaemon, machine: Record<string, string>) {
    const { smallTar: _s, ...wsInfo } = ws;
    this.results = {
      mode: OPTS.quick ? 'quick' : 'full', runs: OPTS.runs, sizes: SIZES, startedAt: new Date().toISOString(), durationS: 0,
      machine, workspace: { ...wsInfo, project: PROJECT }, rows: [], create: [], memory: { withMany: [] }, checks: {}, notes: [],
    };
    this.providers = [
      nativeProvider(ws.dir, RUN),
      cowfsProvider(daemon, path.join(RUN, 'cowfs-mnt')),
      ...(wcache ? [cowfsProvider(wcache, path.join(RUN, 'cowfs-wcache-mnt'), 'cowfs-wcache')] : []),
      cowfsProvider(libfuse2, path.join(RUN, 'cowfs-libfuse2-mnt'), 'cowfs-libfuse2'),
      overlayProvider('overlayfs', ws.dir, path.join(RUN, 'overlayfs')),
      overlayProvider('fuse-overlayfs', ws.dir, path.join(RUN, 'fuse-overlayfs')),
    ];
  }

  private row(group: string, label: string, unit: Unit = 'time', extra: Partial<Row> = {}): Row {
    const r: Row = { group, label, unit, samples: {}, ...extra };
    this.results.rows.push(r);
    return r;
  }

  private static add(r: Row, s: SetupName, v: number): void {
    (r.samples[s] ??= []).push(v);
  }

  // -------------------------------------------------------------- creation

  async create(): Promise<void> {
    const N = SIZES.many;
    const ws = this.ws.dir;
    const cowCli: CreateRow = { method: 'cowfs (`cowfs mount`, CLI)', one: [], many: [], diskKiB: [], oneNote: 'includes starting node for the CLI' };
    const cowApi: CreateRow = { method: 'cowfs (mount over the API)', one: [], many: [], diskKiB: [] };
    const ovl: CreateRow = { method: 'kernel overlayfs', one: [], many: [], diskKiB: [] };
    const fovl: CreateRow = { method: 'fuse-overlayfs', one: [], many: [], diskKiB: [] };
    const copies: [CopyKind, CreateRow][] = [
      ['worktree+cp', { method: '`git worktree add` + `cp -a node_modules`', one: [], many: [], diskKiB: [] }],
      ['cp -a', { method: '`cp -a`', one: [], many: [], diskKiB: [] }],
      ['cp -as', { method: '`cp -as` (symlink forest)', one: [], many: [], diskKiB: [] }],
    ];
    this.results.create.push(cowCli, cowApi, ovl, fovl, ...copies.map(([, r]) => r));
    const stateDirs = [this.daemon.stateDir];
    for (let r = 0; r < OPTS.runs; r++) {
      log(`create: round ${r + 1}/${OPTS.runs}`);
      // cowfs: one with the CLI, one over the API, then N over the API in a row.
      const before = await diskKiB(stateDirs);
      const mnt = (n: string) => path.join(RUN, 'create', 'cowfs', n);
      cowCli.one.push(await this.daemon.mountCli(`c${r}-cli`, mnt(`c${r}-cli`)));
      fs.mkdirSync(mnt(`c${r}-api`), { recursive: true });
      let t = process.hrtime.bigint();
      await this.daemon.mount(`c${r}-api`, mnt(`c${r}-api`));
      cowApi.one.push(Number(process.hrtime.bigint() - t) / 1e9);
      const names = Array.from({ length: N }, (_, i) => `c${r}-${i}`);
      for (const n of names) fs.mkdirSync(mnt(n), { recursive: true });
      t = process.hrtime.bigint();
      for (const n of names) await this.daemon.mount(n, mnt(n));
      cowApi.many.push(Number(process.hrtime.bigint() - t) / 1e9);
      this.results.memory.withMany.push(this.daemon.memory().rss);
      const after = await diskKiB(stateDirs);
      cowApi.diskKiB.push((after - before) / (N + 2));
      for (const n of [`c${r}-cli`, `c${r}-api`, ...names]) await this.daemon.rm(n);
      await sh(`rm -rf ${q(path.join(RUN, 'create', 'cowfs'))}`);

      // overlayfs and fuse-overlayfs: one, then N in a row.
      for (const [kind, row] of [['overlayfs', ovl], ['fuse-overlayfs', fovl]] as const) {
        const pool = new OverlayPool(kind, ws, path.join(RUN, 'create', kind));
        const many = names.map((n) => `m${n}`);
        try {
          row.one.push(await pool.create([`one${r}`]));
          row.many.push(await pool.create(many));
          const dirs = [`one${r}`, ...many].flatMap((n) => ['upper', 'work'].map((d) => path.join(RUN, 'create', kind, n, d)));
          row.diskKiB.push(await diskKiB(dirs) / (N + 1));
        } finally {
          await pool.destroy([`one${r}`, ...many]);
        }
      }

      // Copies: one each round; N of them would write N full copies (tens of GB), so N is estimated as N x one.
      for (const [kind, row] of r < SIZES.copyRuns ? copies : []) {
        const dest = path.join(RUN, 'create', 'copies', `${kind.replace(/\W+/g, '-')}-${r}`);
        fs.mkdirSync(path.dirname(dest), { recursive: true });
        row.one.push((await timed(copyLine(kind, ws, dest), { timeoutMs: 900_000 })).seconds);
        row.diskKiB.push(await diskKiB([dest]));
        await removeCopies(kind, ws, [dest]);
      }
    }
    for (const [, row] of copies) {
      row.many = row.one.map((s) => s * N);
      row.manyNote = `estimated: ${N} x one (${N} copies would write ${fmtBytes(median(row.diskKiB) * 1024 * N)})`;
    }
    cowCli.many = [];
    cowCli.diskKiB = cowApi.diskKiB;
  }

  // -------------------------------------------------------------- checks

  /** Same tree, clean git status, tar without "file changed as we read it": per setup, on fresh views. */
  private async checks(name: SetupName, dir: string): Promise<void> {
    const c: Record<string, string> = {};
    const errFile = path.join(RUN, `check-${name}.err`);
    c.files = (await sh('find . -type f | wc -l', { cwd: dir })).stdout.trim();
    const tar = await sh(`tar -cf - . 2>${q(errFile)} | cat >/dev/null`, { cwd: dir, okCodes: [0, 1, 2] });
    const changed = fs.readFileSync(errFile, 'utf8').split('\n').filter((l) => /changed as we read it/.test(l)).length;
    c['tar on a fresh view'] = tar.code === 0 ? 'exit 0' : `exit ${tar.code}, ${changed} "file changed as we read it"`;
    const gs = await sh('git status --porcelain', { cwd: dir, okCodes: [0, 128] });
    c['git status'] = gs.code !== 0 ? `failed (${gs.stderr.trim().split('\n')[0]})`
      : gs.stdout.trim() === '' ? 'clean' : `${gs.stdout.trim().split('\n').length} entries: ${gs.stdout.trim().split('\n').slice(0, 3).join('; ')}`;
    this.results.checks[name] = { ...c, ...this.results.checks[name] };
  }

  // -------------------------------------------------------------- read-heavy

  async read(): Promise<void> {
    const views = await this.openAll(['rd']);
    try {
      for (const p of this.providers) await this.checks(p.name, views.get(p.name)!.dirs[0]!);
      for (const w of readWorkloads(this.ws)) {
        const warm = this.row('read-heavy, warm', w.label);
        // tsc follows tar, which has just read every file: no warm-up round of its own.
        for (let r = w.id === 'tsc' ? 1 : 0; r <= OPTS.runs; r++) {
          log(`read warm: ${w.id} ${r === 0 ? 'warm-up' : `round ${r}/${OPTS.runs}`}`);
          for (const p of rotate(this.providers, r)) {
            const res = await timed(w.script, { cwd: views.get(p.name)!.dirs[0]! });
            if (r > 0) Bench.add(warm, p.name, res.seconds);
          }
        }
      }
      for (const w of readWorkloads(this.ws).filter((x) => x.cold)) {
        const cold = this.row('read-heavy, cold (caches dropped)', w.label);
        for (let r = 1; r <= SIZES.coldRuns; r++) {
          log(`read cold: ${w.id} round ${r}/${SIZES.coldRuns}`);
          for (const p of rotate(this.providers, r)) {
            await dropCaches();
            Bench.add(cold, p.name, (await timed(w.script, { cwd: views.get(p.name)!.dirs[0]! })).seconds);
          }
        }
      }
    } finally {
      await this.closeAll(views);
    }
  }

  // -------------------------------------------------------------- write-heavy

  async write(): Promise<void> {
    const views = await this.openAll(['wr']);
    const ddBytes = SIZES.ddMiB * 1024 * 1024;
    const untar = this.row('write-heavy', `unpack ${this.ws.smallFiles.toLocaleString('en')} small files (\`tar -x\`)`);
    const ddw = this.row('write-heavy', `write ${fmtBytes(ddBytes)} (\`dd bs=1M conv=fsync\`)`, 'time', { bytes: ddBytes });
    const ddrw = this.row('write-heavy', `read it back, warm (\`dd bs=1M\`)`, 'time', { bytes: ddBytes });
    const ddrc = this.row('write-heavy', `read it back, cold`, 'time', { bytes: ddBytes });
    const fio = this.row('write-heavy', `4 KiB random writes (fio psync, ${SIZES.fioMiB} MiB file, ${SIZES.fioSeconds} s)`, 'rate', { rateName: 'IOPS' });
    try {
      for (let r = 1; r <= SIZES.writeRuns; r++) {
        log(`write: round ${r}/${SIZES.writeRuns}`);
        for (const p of rotate(this.providers, r)) {
          const dir = views.get(p.name)!.writeDirs[0]!;
          const d = `untar-${r}`;
          Bench.add(untar, p.name, (await timed(`mkdir ${d} && tar -xf ${q(this.ws.smallTar)} -C ${d}`, { cwd: dir })).seconds);
          if (r === 1) {
            // What was unpacked reads back the same: contents, modes, mtimes (tar -d compares them).
            const diff = await sh(`tar -df ${q(this.ws.smallTar)} -C ${d}`, { cwd: dir, okCodes: [0, 1, 2] });
            const lines = diff.stdout.trim().split('\n').filter(Boolean);
            (this.results.checks[p.name] ??= {})['unpacked files read back (`tar -d`)'] = diff.code === 0 ? 'identical'
              : `${lines.length} differences, e.g. ${lines.slice(0, 2).join('; ')}`;
          }
          await sh(`rm -rf ${d}`, { cwd: dir });
          const f = `big-${r}`;
          const src = await newContent(`${p.name}-${r}`, ddBytes);
          Bench.add(ddw, p.name, (await timed(`dd if=${q(src)} of=${f} bs=1M count=${SIZES.ddMiB} conv=fsync status=none`, { cwd: dir })).seconds);
          await sh(`dd if=${f} of=/dev/null bs=1M status=none`, { cwd: dir });
          Bench.add(ddrw, p.name, (await timed(`dd if=${f} of=/dev/null bs=1M status=none`, { cwd: dir })).seconds);
          await dropCaches();
          Bench.add(ddrc, p.name, (await timed(`dd if=${f} of=/dev/null bs=1M status=none`, { cwd: dir })).seconds);
          await sh(`rm -f ${f} ${q(src)}`, { cwd: dir });
          const job = `fio --name=rw --filename=fio-${r}.dat --rw=randwrite --bs=4k --size=${SIZES.fioMiB}M --ioengine=psync ` +
            `--runtime=${SIZES.fioSeconds} --time_based --fallocate=none --output-format=json`;
          const res = await sh(job, { cwd: dir, timeoutMs: 600_000 });
          const iops = (JSON.parse(res.stdout.slice(res.stdout.indexOf('{'))) as { jobs: { write: { iops: number } }[] }).jobs[0]!.write.iops;
          Bench.add(fio, p.name, iops);
          await sh(`rm -f fio-${r}.dat`, { cwd: dir });
        }
      }
    } finally {
      await this.closeAll(views);
    }
  }

  // -------------------------------------------------------------- parallel

  async parallel(): Promise<void> {
    const n = SIZES.parallel;
    const names = Array.from({ length: n }, (_, i) => `par-${i}`);
    const views = await this.openAll(names);
    const ws = this.ws;
    // What an agent starts with: walk the tree, git status, load its tools, read the project's own files
    // (everything but node_modules, which the require step reads from). The full tar is the single-view row's job.
    const work = [
      'find . -type f | wc -l', 'git status --porcelain',
      `node -e ${q(`for (const m of ${JSON.stringify(ws.require)}) require(m)`)}`,
      `{ tar --warning=no-file-changed --exclude=./node_modules -cf - . | cat >/dev/null || [ $? -eq 1 ]; }`,
    ].join(' && ');
    const script = (dirs: string[]) => `pids=(); for d in ${dirs.map(q).join(' ')}; do ( cd "$d" && ${work} ) >/dev/null & pids+=($!); done; ` +
      'rc=0; for p in "${pids[@]}"; do wait $p || rc=$?; done; [ $rc -eq 0 ]';
    const row = this.row(`${n} agents at once`, `find + git status + node require + read the project's files (not node_modules), in ${n} views in parallel`);
    try {
      // Warm-up: git refreshes the index of each new view (its inodes and device differ from the workspace's).
      log('parallel: warm-up (git status in each view)');
      for (const p of this.providers) await sh(views.get(p.name)!.dirs.map((d) => `(cd ${q(d)} && git status --porcelain && find . -type f | wc -l)`).join(' && '));
      for (let r = 1; r <= SIZES.parallelRuns; r++) {
        log(`parallel: round ${r}/${SIZES.parallelRuns}`);
        for (const p of rotate(this.providers, r)) Bench.add(row, p.name, (await timed(script(views.get(p.name)!.dirs))).seconds);
      }
      const m = this.daemon.memory();
      this.results.memory.afterParallel = m.rss;
    } finally {
      await this.closeAll(views);
    }
  }

  private async openAll(names: string[]): Promise<Map<SetupName, Views>> {
    const m = new Map<SetupName, Views>();
    try {
      for (const p of this.providers) m.set(p.name, await p.open(names));
    } catch (err) {
      await this.closeAll(m);
      throw err;
    }
    return m;
  }

  private async closeAll(m: Map<SetupName, Views>): Promise<void> {
    for (const [name, v] of m) {
      try {
        await v.close();
      } catch (err) {
        if (!interrupted()) log(`closing the ${name} views failed: ${(err as Error).message}`);
      }
    }
  }

  // -------------------------------------------------------------- profile

  /** cowfs only: request counts (a counting daemon) and a CPU profile (node --cpu-prof) of the same workloads. */
  async profile(): Promise<void> {
    const workloads: Workload[] = [
      ...readWorkloads(this.ws).filter((w) => w.id !== 'tsc'),
      // Each run unpacks into a new directory and writes a new file: the counts hold no rm.
      { id: 'untar', label: 'unpack small files', script: `d=untar-$RANDOM$RANDOM && mkdir $d && tar -xf ${q(this.ws.smallTar)} -C $d`, cold: false },
      { id: 'dd', label: 'dd write', script: `dd if=/dev/zero of=big-$RANDOM$RANDOM bs=1M count=${Math.min(SIZES.ddMiB, 256)} conv=fsync status=none`, cold: false },
    ];
    const prof: NonNullable<Results['profile']> = { counts: {}, wall: {}, hot: undefined };
    this.results.profile = prof;
    // 1. Request counts and time in JS per request type.
    const countsFile = path.join(RUN, 'counts.json');
    const counting = new CowfsDaemon(this.ws.dir, path.join(RUN, 'count-state'), path.join(RUN, 'count-daemon.log'));
    await counting.start({ script: [path.join(ROOT, 'dist/bench/lib/counting-daemon.js'), this.ws.dir, path.join(RUN, 'count-state'), countsFile] });
    const mnt = path.join(RUN, 'profile-mnt', 'count');
    try {
      await counting.mount('count', mnt);
      let seq = 0;
      const dump = async (): Promise<Record<string, { n: number; ms: number }>> => {
        process.kill(counting.pid, 'SIGUSR2');
        for (let i = 0; i < 200; i++) {
          await new Promise((r) => setTimeout(r, 25));
          if (fs.existsSync(countsFile)) {
            const j = JSON.parse(fs.readFileSync(countsFile, 'utf8')) as { seq: number; ops: Record<string, { n: number; ms: number }> };
            if (j.seq > seq) {
              seq = j.seq;
              return j.ops;
            }
          }
        }
        throw new Error('the counting daemon did not write its counts');
      };
      for (const w of workloads) {
        log(`profile: counting requests of ${w.id}`);
        await timed(w.script, { cwd: mnt }); // warm-up
        process.kill(counting.pid, 'SIGUSR1');
        await new Promise((r) => setTimeout(r, 50));
        prof.wall[w.id] = (await timed(w.script, { cwd: mnt })).seconds;
        prof.counts[w.id] = await dump();
      }
      await sh('rm -rf untar-* big-*', { cwd: mnt });
    } finally {
      await counting.stop();
    }
    // 2. A CPU profile of the daemon (the CLI's own daemon verb) over the same workloads, warm.
    const profDir = path.join(RUN, 'cpuprofile');
    const profiled = new CowfsDaemon(this.ws.dir, path.join(RUN, 'prof-state'), path.join(RUN, 'prof-daemon.log'));
    await profiled.start({ nodeFlags: ['--cpu-prof', `--cpu-prof-dir=${profDir}`] });
    const pm = path.join(RUN, 'profile-mnt', 'prof');
    try {
      await profiled.mount('prof', pm);
      log('profile: CPU profile of the daemon');
      for (const w of workloads) await timed(w.script, { cwd: pm });
      for (const w of workloads) await timed(w.script, { cwd: pm });
      await sh('rm -rf untar-* big-*', { cwd: pm });
    } finally {
      await profiled.stop();
    }
    const file = fs.existsSync(profDir) ? fs.readdirSync(profDir).find((f) => f.endsWith('.cpuprofile')) : undefined;
    if (file) {
      const keep = path.join(CACHE, `daemon-${this.results.mode}.cpuprofile`);
      fs.copyFileSync(path.join(profDir, file), keep);
      prof.hot = hotSpots(keep, ROOT, 25);
      this.results.notes.push(`CPU profile of the daemon kept at ${keep} (open it in Chrome DevTools or speedscope).`);
    }
  }
}

// ------------------------------------------------------------------ report

function rowRatio(r: Row, s: SetupName): number {
  const n = median(r.samples.native ?? []);
  const v = median(r.samples[s] ?? []);
  return r.unit === 'time' ? v / n : n / v;
}

function nativeCell(r: Row): string {
  const n = median(r.samples.native ?? []);
  if (r.unit === 'rate') return `${Math.round(n).toLocaleString('en')} ${r.rateName ?? '/s'}`;
  if (r.bytes) return `${fmtSeconds(n)} (${Math.round(r.bytes / n / 1e6).toLocaleString('en')} MB/s)`;
  return fmtSeconds(n);
}

function workTable(res: Results): string {
  // The setups this run measured (--quick leaves one out).
  const setups = SETUPS.filter((s) => s !== 'native' && res.rows.some((r) => (r.samples[s]?.length ?? 0) > 0));
  const rows: string[][] = [['workload', 'native', ...setups, 'noise']];
  let group = '';
  for (const r of res.rows) {
    if (r.group !== group) {
      group = r.group;
      rows.push([`**${group}**`, ...rows[0]!.slice(1).map(() => '')]);
    }
    const noise = Math.max(...SETUPS.map((s) => spread(r.samples[s] ?? [])));
    rows.push([r.label, nativeCell(r), ...setups.map((s) => fmtRatio(rowRatio(r, s))), `±${Math.round(noise * 50)}%`]);
  }
  // Every column right-aligned but the workload's name and the noise.
  return mdTable(rows, rows[0]!.map((_, i) => i > 0 && i < rows[0]!.length - 1));
}

function createTable(res: Results): string {
  const N = res.sizes.many;
  const rows: string[][] = [['method', 'one workspace', `${N} workspaces`, 'disk per workspace', 'notes']];
  for (const c of res.create) {
    const notes = [c.oneNote, c.manyNote].filter(Boolean).join('; ');
    rows.push([
      c.method, fmtSeconds(median(c.one)), c.many.length ? fmtSeconds(median(c.many)) : '—',
      fmtBytes(median(c.diskKiB) * 1024), notes,
    ]);
  }
  return mdTable(rows, [false, true, true, true, false]);
}

function reading(res: Results): string[] {
  const lines: string[] = [];
  const cow = res.rows.map((r) => ({ r, c: rowRatio(r, 'cowfs'), f: rowRatio(r, 'fuse-overlayfs'), o: rowRatio(r, 'overlayfs') }))
    .filter((x) => Number.isFinite(x.c));
  const fmt = (x: { r: Row; c: number }) => `${x.r.label.replace(/`/g, '')} (${x.r.group}) ${fmtRatio(x.c)}`;
  const within = cow.filter((x) => x.c <= 1.5);
  const behind = cow.filter((x) => x.c > 1.5).sort((a, b) => b.c - a.c);
  const beatsFuse = cow.filter((x) => x.c < x.f);
  if (within.length) lines.push(`- cowfs within 1.5x of the native disk: ${within.map(fmt).join('; ')}.`);
  if (behind.length) lines.push(`- cowfs more than 1.5x behind the native disk: ${behind.map(fmt).join('; ')}.`);
  lines.push(`- cowfs ahead of fuse-overlayfs on ${beatsFuse.length} of ${cow.length} rows` +
    (beatsFuse.length ? `: ${beatsFuse.map((x) => `${x.r.label.replace(/`/g, '')} (${fmtRatio(x.c)} vs ${fmtRatio(x.f)})`).join('; ')}` : '') + '.');
  const cowCreate = res.create.find((c) => c.method.startsWith('cowfs (mount over'));
  if (cowCreate) {
    const per = median(cowCreate.many) / res.sizes.many;
    lines.push(`- Creating: one agent over the API ${fmtSeconds(median(cowCreate.one))}, ${res.sizes.many} in a row ${fmtSeconds(median(cowCreate.many))} ` +
      `(${fmtSeconds(per)} each), ${fmtBytes(median(cowCreate.diskKiB) * 1024)} of disk each; the CLI adds starting node ` +
      `(${fmtSeconds(median(res.create[0]!.one))} for \`cowfs mount\`).`);
  }
  if (res.memory.withMany.length) {
    lines.push(`- Daemon memory (VmRSS) with ${res.sizes.many} agents mounted: ${fmtBytes(median(res.memory.withMany))}` +
      (res.memory.idle ? ` (idle, no agent: ${fmtBytes(res.memory.idle)})` : '') +
      (res.memory.afterParallel ? `; right after the ${res.sizes.parallel} agents' work ${fmtBytes(res.memory.afterParallel)}` : '') +
      (res.memory.hwm ? `; peak over the run (VmHWM) ${fmtBytes(res.memory.hwm)}` : '') + '.');
  }
  return lines;
}

function profileText(res: Results): string {
  const p = res.profile;
  if (!p) return '';
  const parts: string[] = ['#### Where cowfs spends its time (`--profile`)', ''];
  const ops = [...new Set(Object.values(p.counts).flatMap((c) => Object.keys(c)))]
    .filter((op) => Object.values(p.counts).some((c) => (c[op]?.n ?? 0) > 0));
  const rows: string[][] = [['workload (warm, one run)', 'wall', 'requests reaching JS', 'time in JS', ...ops]];
  for (const [w, c] of Object.entries(p.counts)) {
    const n = Object.values(c).reduce((a, b) => a + b.n, 0);
    const ms = Object.values(c).reduce((a, b) => a + b.ms, 0);
    rows.push([w, fmtSeconds(p.wall[w] ?? NaN), n.toLocaleString('en'), fmtSeconds(ms / 1000),
      ...ops.map((op) => (c[op] ? `${c[op]!.n.toLocaleString('en')}` : ''))]);
  }
  parts.push('Calls from the FUSE adapter into the agent\'s tree (TreeOps), counted by a daemon whose trees are wrapped in a counting proxy; ' +
    '"time in JS" is the time inside those calls (the rest of the wall time is the kernel round trip, libfuse and fuse-native).', '',
    mdTable(rows, rows[0]!.map((_, i) => i > 0)), '');
  if (p.hot) {
    parts.push(`CPU profile of the daemon over the same workloads (twice each): ${fmtSeconds(p.hot.totalMs / 1000)} sampled, ` +
      `${fmtSeconds(p.hot.idleMs / 1000)} idle. Self time, busy time only:`, '');
    parts.push(mdTable([['function', 'where', 'self', 'share'],
      ...p.hot.spots.map((s) => [s.fn, s.where, fmtSeconds(s.selfMs / 1000), `${(s.share * 100).toFixed(1)}%`])], [false, false, true, true]), '');
  }
  return parts.join('\n');
}

function report(res: Results): string {
  const w = res.workspace;
  const parts = [
    `### ${res.mode === 'quick' ? '`npm run bench -- --quick`' : '`npm run bench`'}: ${res.startedAt.slice(0, 16).replace('T', ' ')} UTC, ${Math.round(res.durationS / 60)} min`,
    '',
    `Workspace: ${w.project} (a git repo of its published sources: ${w.files.toLocaleString('en')} files, ` +
    `${w.entries.toLocaleString('en')} entries, ${fmtBytes(w.bytes)}; node_modules ${w.nodeModulesFiles.toLocaleString('en')} files). ` +
    `Medians of interleaved rounds: ${res.runs} for creating (${res.sizes.copyRuns} for the copies), ${res.runs} for warm reading ` +
    `(after one warm-up round), ${res.sizes.coldRuns} for cold reading, ${res.sizes.writeRuns} for writing, ${res.sizes.parallelRuns} for the ${res.sizes.parallel} agents. ` +
    'Ratios are slowdowns against the native disk in the same run: time / native time, or native rate / rate (IOPS); below 1 is faster than native. ' +
    '"noise" is the widest (max - min) / median / 2 over the setups of that row.',
    '',
    '#### Creating isolated workspaces',
    '',
    createTable(res),
    '',
    '#### Working inside one',
    '',
    workTable(res),
    '',
    '#### Reading',
    '',
    ...reading(res),
    '',
  ];
  const checks = Object.entries(res.checks);
  if (checks.length) {
    const keys = [...new Set(checks.flatMap(([, c]) => Object.keys(c)))];
    parts.push('#### Checks (each setup, on a fresh view)', '', mdTable([['setup', ...keys], ...checks.map(([s, c]) => [s, ...keys.map((k) => c[k] ?? '')])]), '');
  }
  const prof = profileText(res);
  if (prof) parts.push(prof);
  parts.push('#### Machine', '', ...Object.entries(res.machine).map(([k, v]) => `- ${k}: ${v}`), '');
  if (res.notes.length) parts.push(...res.notes.map((n) => `- ${n}`), '');
  return parts.join('\n');
}

/** Replaces this mode's block of bench/RESULTS.md, keeping everything else in the file. */
function writeResults(res: Results, text: string): string {
  const file = path.join(ROOT, 'bench', 'RESULTS.md');
  const begin = `<!-- bench:${res.mode}:begin (written by npm run bench; edit outside these markers) -->`;
  const end = `<!-- bench:${res.mode}:end -->`;
  let doc = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '# cowfs benchmarks\n\n';
  const block = `${begin}\n${text}\n${end}`;
  const i = doc.indexOf(begin.slice(0, begin.indexOf(' (')));
  const j = doc.indexOf(end);
  if (i >= 0 && j > i) doc = doc.slice(0, i) + block + doc.slice(j + end.length);
  else doc = `${doc.trimEnd()}\n\n${block}\n`;
  fs.writeFileSync(file, doc);
  return file;
}

// ------------------------------------------------------------------ main

async function main(): Promise<void> {
  installHandlers();
  log(`cowfs bench (${OPTS.quick ? 'quick' : 'full'}, ${OPTS.runs} rounds)`);
  await preflight();
  const ws = await prepareWorkspace(CACHE, OPTS.quick, log);
  // A killed run's worktrees are gone with its run directory, but still registered: `worktree add` would refuse their paths.
  await sh(`git -C ${q(ws.dir)} worktree prune`);
  log(`workspace ${ws.dir}: ${ws.files} files, node_modules ${ws.nodeModulesFiles} files, ${fmtBytes(ws.bytes)}`);
  const machine = await machineInfo();
  const daemon = new CowfsDaemon(ws.dir, path.join(RUN, 'cowfs-state'), path.join(RUN, 'cowfs-daemon.log'));
  // The same workspace with the kernel's writeback cache (not in --quick: it must stay under 3 minutes),
  // and through the other adapter, each in a daemon of its own (its own state directory).
  const wcache = OPTS.quick ? undefined
    : new CowfsDaemon(ws.dir, path.join(RUN, 'cowfs-wcache-state'), path.join(RUN, 'cowfs-wcache-daemon.log'));
  const libfuse2 = new CowfsDaemon(ws.dir, path.join(RUN, 'cowfs-libfuse2-state'), path.join(RUN, 'cowfs-libfuse2-daemon.log'));
  let bench: Bench | undefined;
  try {
    await daemon.start({ fuse: 'libfuse3' });
    if (wcache) {
      await wcache.start({ fuse: 'libfuse3' });
      await wcache.call('config', { key: 'writeCache', value: 'on' });
    }
    await libfuse2.start({ fuse: 'libfuse2' });
    bench = new Bench(ws, daemon, wcache, libfuse2, machine);
    bench.results.memory.idle = daemon.memory().rss;
    if (wants('create')) await bench.create();
    if (wants('read')) await bench.read();
    if (wants('write')) await bench.write();
    if (wants('parallel')) await bench.parallel();
    bench.results.memory.hwm = daemon.memory().hwm;
    if (OPTS.profile) await bench.profile();
  } finally {
    log('cleaning up');
    await cleanupAll();
  }
  const left = mountsUnder(RUN);
  if (left.length) throw new Error(`mounts left behind: ${left.map((m) => m.mountpoint).join(' ')}`);
  const res = bench.results;
  res.durationS = (Date.now() - t0) / 1000;
  res.machine['load average at end'] = os.loadavg().map((x) => x.toFixed(2)).join(' ');
  const text = report(res);
  process.stdout.write(`\n${text}\n`);
  fs.writeFileSync(path.join(CACHE, `last-results-${res.mode}.json`), JSON.stringify(res, null, 2));
  if (OPTS.writeResults) log(`wrote ${writeResults(res, text)}`);
  log(`raw samples: ${path.join(CACHE, `last-results-${res.mode}.json`)}; no mount left under ${RUN}`);
}

main().then(() => process.exit(0), async (err: Error) => {
  if (interrupted()) return; // the signal handler cleans up and exits
  process.stderr.write(`bench failed: ${err.stack ?? err}\n`);
  await cleanupAll();
  process.exit(1);
});
