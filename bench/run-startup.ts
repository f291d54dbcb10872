/**
 * How long `cowfs run AGENT -- true` takes from start to exit, against what
 * the mount alone costs, in one run: `npm run bench:run [-- --rounds N]`.
 *
 * Every row starts the CLI as a user does (a node process per command) and
 * is timed from here around the whole child. Rounds are interleaved, so load
 * from other processes on the machine hits every row alike; the table gives
 * medians and the fastest round. Everything runs under a fresh directory in
 * os.tmpdir(); the daemon is stopped and every mount under it removed at the
 * end, also on failure or ^C (bench/lib/cleanup.ts).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cleanupAll, installHandlers, setMountRoot } from './lib/cleanup.js';
import { CLI, CowfsDaemon, ROOT } from './lib/cowfs.js';
import { fmtSeconds, mdTable, median } from './lib/stats.js';

const rounds = Number(process.argv[process.argv.indexOf('--rounds') + 1]) || 15;

function timed(file: string, args: string[], cwd: string): number {
  const t0 = process.hrtime.bigint();
  execFileSync(file, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

async function main(): Promise<void> {
  installHandlers();
  const run = fs.mkdtempSync(path.join(os.tmpdir(), 'cowfs-test-bench-run-'));
  setMountRoot(run);
  const ws = path.join(run, 'ws');
  fs.cpSync(path.join(ROOT, 'src'), path.join(ws, 'src'), { recursive: true });
  for (const args of [['init', '-q'], ['add', '-A'], ['-c', 'user.email=b@b', '-c', 'user.name=b', 'commit', '-qm', 'x']]) {
    execFileSync('git', args, { cwd: ws, stdio: 'ignore' });
  }
  const daemon = new CowfsDaemon(ws, path.join(ws, '.cowfs'), path.join(run, 'daemon.log'));
  await daemon.start();
  const cli = (...args: string[]) => timed(process.execPath, [CLI, ...args], ws);
  const mnt = path.join(run, 'mnt');
  fs.mkdirSync(mnt);
  const bare = ['--mount', '--propagation', 'private', '--', 'bwrap', '--ro-bind', '/', '/', '--dev', '/dev', '--proc', '/proc',
    '--tmpfs', '/tmp', '--unshare-pid', '--unshare-ipc', '--new-session', '--die-with-parent', '--cap-drop', 'ALL', '--', 'true'];

  await daemon.call('mount', { agent: 'existing', mountpoint: mnt });
  await daemon.call('unmount', { agent: 'existing' });
  fs.mkdirSync(path.join(run, 'own'));
  await daemon.call('mount', { agent: 'mounted', mountpoint: path.join(run, 'own') });

  /** Seconds `fn` takes. */
  const clock = async (fn: () => Promise<unknown> | unknown): Promise<number> => {
    const t0 = process.hrtime.bigint();
    await fn();
    return Number(process.hrtime.bigint() - t0) / 1e9;
  };
  const sandboxed = (s: { mountpoint: string; workspace: string }) => timed('unshare', [...bare.slice(0, -2),
    '--bind', s.mountpoint, s.workspace, '--', 'true'], ws);
  const rows: [string, () => number | Promise<number>][] = [
    ['API: `mount` + `unmount` (no node start)', () => clock(async () => {
      await daemon.call('mount', { agent: 'existing', mountpoint: mnt });
      await daemon.call('unmount', { agent: 'existing' });
    })],
    ['API: `run.start` + sandbox + `run.end` (what `cowfs run` adds to its node start)', () => clock(async () => {
      const s = await daemon.call<{ id: string; mountpoint: string; workspace: string }>('run.start', { agent: 'existing', rw: [] });
      sandboxed(s);
      await daemon.call('run.end', { id: s.id });
    })],
    ['`cowfs status` (node start + one API call: the CLI floor)', () => cli('status')],
    ['`cowfs mount AGENT DIR` (the mount alone)', () => {
      const t = cli('mount', 'existing', mnt);
      cli('unmount', 'existing');
      return t;
    }],
    ['`cowfs mount` + `cowfs unmount` (two CLI starts)', () => cli('mount', 'existing', mnt) + cli('unmount', 'existing')],
    ['the sandbox alone: `unshare … bwrap … true`', () => timed('unshare', bare, ws)],
    ['`cowfs run AGENT -- true`, agent exists (mount, sandbox, unmount)', () => cli('run', 'existing', '--', 'true')],
    ['`cowfs run AGENT -- true`, agent already mounted', () => cli('run', 'mounted', '--', 'true')],
  ];
  let fresh = 0;
  rows.push(['`cowfs run NEW -- true`, a new agent each time', () => cli('run', `new-${fresh++}`, '--', 'true')]);

  const samples = rows.map(() => [] as number[]);
  for (let r = 0; r < rounds + 1; r++) {
    for (const [i, [, fn]] of rows.entries()) {
      const s = await fn();
      if (r > 0) samples[i]!.push(s); // round 0 warms the page cache and the daemon's JIT
    }
    process.stderr.write(`\rbench: round ${r}/${rounds}`);
  }
  process.stderr.write('\n');
  await daemon.stop();
  await cleanupAll();
  fs.rmSync(run, { recursive: true, force: true });

  const med = samples.map(median);
  // Each `cowfs run` row against `cowfs mount` alone; the API row against the API mount + unmount.
  const baseline = (i: number) => (i === 1 ? 0 : i >= 6 ? 3 : undefined);
  const table = [['what (wall time from start to exit)', 'median', 'fastest', 'over the mount alone'],
    ...rows.map(([name], i) => {
      const b = baseline(i);
      return [name, fmtSeconds(med[i]!), fmtSeconds(Math.min(...samples[i]!)), b === undefined ? '' : `${((med[i]! - med[b]!) * 1e3).toFixed(0)} ms`];
    })];
  process.stdout.write(`cowfs run startup, ${rounds} interleaved rounds, ${os.cpus().length} cores, load ${os.loadavg()[0]!.toFixed(1)}, ${new Date().toISOString().slice(0, 16)}Z\n\n`);
  process.stdout.write(`${mdTable(table, [false, true, true, true])}\n`);
}

main().catch(async (err) => {
  process.stderr.write(`bench: ${(err as Error).stack ?? err}\n`);
  await cleanupAll();
  process.exit(1);
});
