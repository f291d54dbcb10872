import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, TestDaemon } from '../helpers/daemon.js';

describe('the CLI around the daemon', () => {
  let d: TestDaemon;

  beforeAll(() => {
    d = TestDaemon.create((ws) => fs.writeFileSync(path.join(ws, 'a.txt'), 'a\n'));
  });

  afterAll(async () => {
    const pidFile = path.join(d.stateDir, 'daemon.pid');
    if (fs.existsSync(pidFile)) {
      const pid = Number(fs.readFileSync(pidFile, 'utf8'));
      try { process.kill(pid, 'SIGTERM'); } catch { /* already gone */ }
      for (let i = 0; i < 100 && fs.existsSync(pidFile); i++) await new Promise((r) => setTimeout(r, 100));
    }
    await d?.destroy();
  });

  it('says clearly when the daemon is not running', async () => {
    const r = await d.cli(['ls', '--workspace', d.workspace]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/daemon is not running .*cowfs daemon --detach/);
    const j = await d.cli(['ls', '--json', '--workspace', d.workspace]);
    expect(JSON.parse(j.stdout).error.code).toBe('daemon_down');
    // Outside any workspace or mount, the CLI says where it looked.
    const nowhere = await d.cli(['ls'], { cwd: d.root });
    expect(nowhere.stderr).toMatch(/not inside a cowfs workspace or mount .*--workspace DIR/);
  });

  it('every verb has --help', async () => {
    for (const verb of ['daemon', 'mount', 'run', 'unmount', 'ls', 'status', 'commit', 'conflicts', 'resolve', 'rm', 'log', 'show', 'events', 'replay', 'config', 'export', 'import', 'have', 'gc', 'diff', 'land', 'undo']) {
      const r = await d.cli([verb, '--help']);
      expect(r.code, verb).toBe(0);
      expect(r.stdout, verb).toMatch(/^Usage: cowfs /);
    }
  });

  it('a usage error with --json is JSON on stdout too (commander printed it on stderr alone)', async () => {
    for (const [args, message] of [[['commit', 'a'], "required option '-m, --message <msg>' not specified"], [['bogus'], "unknown command 'bogus'"]] as const) {
      const r = await d.cli([...args, '--json']);
      expect(r.code).toBe(1);
      expect(JSON.parse(r.stdout)).toEqual({ error: { code: 'usage', message } });
    }
  });

  it('daemon --detach starts in the background with a pid file, and a second one is refused', async () => {
    const r = await d.json(['daemon', '--detach']);
    expect(r.pid).toBeGreaterThan(0);
    expect(Number(fs.readFileSync(path.join(d.stateDir, 'daemon.pid'), 'utf8'))).toBe(r.pid);
    expect((fs.statSync(path.join(d.stateDir, 'daemon.sock')).mode & 0o777).toString(8)).toBe('600');
    const again = await d.cli(['daemon']);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/already running/);
    // Detached too: the running daemon answering on the socket is not taken for the new one.
    const detached = await d.cli(['daemon', '--detach']);
    expect(detached.code).toBe(1);
    expect(detached.stderr).toMatch(new RegExp(`a cowfs daemon \\(pid ${r.pid}\\) is already running`));
    expect(Number(fs.readFileSync(path.join(d.stateDir, 'daemon.pid'), 'utf8'))).toBe(r.pid);
  });

  it('events --follow streams events as they happen', async () => {
    const until = async (cond: () => boolean, step: () => Promise<unknown> = async () => undefined) => {
      for (const end = Date.now() + 30_000; !cond() && Date.now() < end; await new Promise((r) => setTimeout(r, 100))) await step();
    };
    // The follower says nothing once it listens: commits of another agent until one shows tell the test it does.
    await d.json(['mount', 'probe', d.mnt('probe')]);
    await d.json(['unmount', 'probe']);
    const follower = spawn(process.execPath, [CLI, 'events', '--follow', '--json'], { cwd: d.workspace });
    let out = '';
    follower.stdout.on('data', (b) => { out += String(b); });
    try {
      await until(() => out.includes('"agent":"probe"'), () => d.json(['commit', 'probe', '-m', 'are you listening']));
      expect(out).toContain('"agent":"probe"');
      await d.json(['mount', 'f', d.mnt('f')]);
      d.sh('echo hi > new.txt', d.mnt('f'));
      await until(() => out.includes('"new.txt"'));
      const events = out.trim().split('\n').map((l) => JSON.parse(l) as { type: string; agent: string; path?: string; files?: unknown[] })
        .filter((e) => e.agent !== 'probe');
      expect(events.map((e) => e.type)).toEqual(expect.arrayContaining(['AGENT_CREATED', 'put']));
      expect(events.every((e) => e.agent === 'f')).toBe(true);
      // A small text file travels inside the event, for a subscriber on another machine.
      expect(events.find((e) => e.path === 'new.txt')?.files).toEqual([expect.objectContaining({ path: 'new.txt', content: 'hi\n' })]);
      d.sh("sed -i 's/a/A/' a.txt", d.mnt('f'));
      await until(() => out.includes('"patch"'));
      expect(out).toContain('"patch":"@@ -1,2 +1,2 @@\\n-a\\n+A\\n');
    } finally {
      follower.kill('SIGTERM');
      await d.json(['unmount', 'f']);
    }
  });

  it('a reader that stops early (cowfs diff | head) ends it quietly, as git does', async () => {
    await d.json(['mount', 'pipe', d.mnt('pipe')]);
    // More than a pipe holds, so the CLI is still writing when head has gone.
    d.sh("seq 1 100000 > long.txt", d.mnt('pipe'));
    const err = path.join(d.root, 'pipe.err');
    const r = d.sh(`set +e; node ${CLI} diff pipe 2>${err} | head -c 20; echo " rc=\${PIPESTATUS[0]}"`, d.workspace);
    expect([r, fs.readFileSync(err, 'utf8')]).toEqual(['diff --git a/long.tx rc=141\n', '']);
    await d.json(['unmount', 'pipe']);
  });
});

describe('a pid file naming a live process that is no daemon (its pid reused after a reboot)', () => {
  let d: TestDaemon;
  let other: ChildProcess | undefined;

  afterAll(async () => {
    other?.kill();
    await d?.destroy();
  });

  it('does not keep the daemon from starting', async () => {
    other = spawn('sleep', ['600'], { stdio: 'ignore' });
    d = TestDaemon.create((ws) => fs.writeFileSync(path.join(ws, 'a.txt'), 'a\n'));
    fs.mkdirSync(d.stateDir, { mode: 0o700 });
    fs.writeFileSync(path.join(d.stateDir, 'daemon.pid'), `${other.pid}\n`);
    await d.start();
    expect(Number(fs.readFileSync(path.join(d.stateDir, 'daemon.pid'), 'utf8'))).toBe(d.pid);
    expect(other.exitCode).toBeNull();
  });
});

describe('a corrupt store', () => {
  let d: TestDaemon;

  afterAll(async () => {
    await d?.destroy();
  });

  it('keeps the daemon from starting with one clear line, where lmdb killed it without a word', async () => {
    d = TestDaemon.create((ws) => fs.writeFileSync(path.join(ws, 'a.txt'), 'a\n'));
    await d.start();
    await d.json(['mount', 'a', d.mnt('a')]);
    d.sh('echo b > b.txt', d.mnt('a'));
    await d.json(['commit', 'a', '-m', 'b']);
    await d.stop();
    const data = path.join(d.stateDir, 'store', 'data.mdb');
    const good = fs.readFileSync(data);
    const corruptions: [string, (f: string) => void][] = [
      ['meta pages zeroed', (f) => { const fd = fs.openSync(f, 'r+'); fs.writeSync(fd, Buffer.alloc(8192), 0, 8192, 0); fs.closeSync(fd); }],
      ['cut short', (f) => fs.truncateSync(f, 16384)],
    ];
    for (const [what, corrupt] of corruptions) {
      corrupt(data);
      for (const args of [['daemon'], ['daemon', '--detach']]) {
        const r = await d.cli(args);
        expect(r.code, what).toBe(1);
        expect(r.stderr, what).toMatch(/^cowfs: the cowfs store in \S+ may be corrupt: reading it killed the process \(SIG[A-Z]+: .*\)\. Keep a copy of the state directory/);
        expect(r.stderr.trim().split('\n'), what).toHaveLength(1);
      }
      fs.writeFileSync(data, good);
    }
    await d.start(); // the copy put back
    expect(d.sh('cat b.txt', d.mnt('a'))).toBe('b\n');
  });
});
