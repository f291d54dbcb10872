import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CLI, TestDaemon, treeChecksum, type CliResult } from '../helpers/daemon.js';
import { writeFile, writeSampleProject } from '../helpers/project.js';
import { listFuseMounts } from '../../src/fuse/mount-table.js';

/** The sample project (a git repo with an npm test), a file only root may write, a directory of another user, an absolute symlink. */
function prepareProject(ws: string): void {
  writeSampleProject(ws, () => {
    writeFile(ws, '.gitignore', 'node_modules/\n');
    writeFile(ws, 'root-only.txt', 'root\n');
    fs.mkdirSync(path.join(ws, 'shared'));
    fs.chownSync(path.join(ws, 'shared'), 65534, 65534);
    // A symlink whose target is the workspace's own absolute path, as tools leave them.
    fs.symlinkSync(path.join(ws, 'src/index.js'), path.join(ws, 'abs-link.js'));
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls for `cond` (what other processes do comes late on a loaded machine). */
async function until(what: string, cond: () => boolean, ms = 30_000): Promise<void> {
  for (const end = Date.now() + ms; !cond(); await sleep(50)) if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
}

/** The sandbox's FUSE mounts still in the kernel's table for this daemon's state directory. */
function runMounts(d: TestDaemon): string[] {
  return listFuseMounts().filter((m) => m.mountpoint.startsWith(`${d.stateDir}/`)).map((m) => m.mountpoint);
}

/** Processes whose command line contains `marker` (to check that none outlives its sandbox). */
function processesWith(marker: string): number[] {
  const out: number[] = [];
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(marker)) out.push(Number(pid));
    } catch {
      // gone
    }
  }
  return out;
}

describe('cowfs run: a sandboxed program that sees only its agent\'s tree', () => {
  let d: TestDaemon;
  let ws: string;
  let wsSum: string;
  /** Outside /tmp (which the sandbox replaces), so covering it is what hides it. */
  let outside: string;
  /** A directory both the tests and sandboxes (with --rw) can write: how a sandbox reports back. */
  let shared: string;
  const started: ChildProcess[] = [];

  beforeAll(async () => {
    d = TestDaemon.create(prepareProject);
    ws = d.workspace;
    wsSum = treeChecksum(ws);
    outside = fs.mkdtempSync('/var/tmp/cowfs-test-run-');
    shared = path.join(d.root, 'shared');
    fs.mkdirSync(shared, { mode: 0o777 });
    fs.chmodSync(shared, 0o777);
    await d.start();
  });

  // A rare timeout here under load (libfuse 2) left nothing to read once the temp root was gone.
  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail') process.stderr.write(`${ctx.task.name}\n${d.diagnosis()}\n`);
  });

  afterAll(async () => {
    for (const p of started) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    try {
      await d?.destroy();
    } finally {
      for (const m of listFuseMounts().filter((x) => x.mountpoint.startsWith(`${outside}/`))) execFileSync('umount', ['-l', m.mountpoint]);
      fs.rmSync(outside, { recursive: true, force: true });
    }
  });

  /** `cowfs run AGENT [flags] -- bash -c SCRIPT`, from `cwd`; the script gets WS and CLI (how it calls cowfs). */
  function run(agent: string, script: string, opts: { flags?: string[]; cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
    return d.cli(['run', agent, ...(opts.flags ?? []), '--', 'bash', '-euo', 'pipefail', '-c', script], {
      cwd: opts.cwd ?? ws, env: { WS: ws, CLI, STATE: d.stateDir, SHARED: shared, ...opts.env },
    });
  }

  /** The same, as a child process the test can signal. */
  function spawnRun(agent: string, script: string, flags: string[] = [], env: NodeJS.ProcessEnv = {}): { proc: ChildProcess; output: () => string; exit: Promise<number> } {
    const proc = spawn(process.execPath, [CLI, 'run', agent, ...flags, '--', 'bash', '-c', script], {
      cwd: ws, env: { ...process.env, WS: ws, CLI, SHARED: shared, BEFORE: path.join(outside, 'before'), AFTER: path.join(outside, 'after'), ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    started.push(proc);
    let out = '';
    proc.stdout!.on('data', (b) => { out += String(b); });
    proc.stderr!.on('data', (b) => { out += String(b); });
    const exit = new Promise<number>((r) => proc.once('exit', (code, sig) => r(code ?? 128 + (sig ? 1 : 0))));
    return { proc, output: () => out, exit };
  }

  function expectOk(r: CliResult): void {
    if (r.code !== 0) throw new Error(`cowfs run failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
  }

  /** What an agent's tree holds at `rel`, read through a mount of it from outside (no sandbox). */
  async function readAgent(agent: string, rel: string): Promise<string | null> {
    const mnt = d.mnt(`view-${agent}`);
    await d.json(['mount', agent, mnt]);
    try {
      const p = path.join(mnt, rel);
      return fs.existsSync(p) ? fs.readFileSync(p, 'utf8') : null;
    } finally {
      await d.json(['unmount', agent]);
    }
  }

  it('a stand-in agent edits by relative and absolute paths, runs git, npm test and cowfs commit; only its layer changes', async () => {
    const r = await run('worker', `
      test "$PWD" = "$WS/src"
      test "$COWFS_AGENT" = worker && test "$COWFS_WORKSPACE" = "$WS"
      echo '// relative edit' >> index.js
      sed -i 's/toUpperCase/toLowerCase/' ../src/util/strings.js
      echo absolute > "$WS/new-file.txt"
      mkdir -p "$WS/lib/deep" && echo 'module.exports = 1;' > "$WS/lib/deep/x.js"
      cd "$WS"
      git status --porcelain
      git add -A && git -c user.email=a@a -c user.name=agent commit -qm 'agent work'
      test "$(git log --oneline | wc -l)" = 2
      npm test 2>&1
      node "$CLI" status
      node "$CLI" commit -m 'from inside the sandbox'
      node "$CLI" log | grep -q 'from inside the sandbox'
    `, { cwd: path.join(ws, 'src') });
    expectOk(r);
    expect(r.stdout).toContain(' M src/index.js');
    expect(r.stdout).toContain('?? new-file.txt');
    expect(r.stdout).toMatch(/> node test\.js\s+ok/);
    expect(r.stdout).toMatch(/agent +worker \(parent the workspace\)/);
    expect(r.stdout).toMatch(/committed worker: commit/);
    expect(r.stderr).toContain('cowfs: created agent worker (based on the workspace)');
    // Nothing reached the real workspace; everything is in the agent's tree.
    expect(treeChecksum(ws)).toBe(wsSum);
    expect(await readAgent('worker', 'new-file.txt')).toBe('absolute\n');
    expect(await readAgent('worker', 'src/index.js')).toContain('// relative edit');
    expect(await readAgent('worker', 'lib/deep/x.js')).toBe('module.exports = 1;\n');
    const log = await d.json<{ type: string; message?: string }[]>(['log', 'worker']);
    expect(log.some((e) => e.type === 'AGENT_COMMIT_CREATED' && e.message === 'from inside the sandbox')).toBe(true);
    expect(runMounts(d)).toEqual([]);
  });

  it('passes the exit status through, 128+N for a signal, and commits on exit 0 only with --commit-on-exit', async () => {
    expect((await run('codes', 'exit 0')).code).toBe(0);
    expect((await run('codes', 'exit 42')).code).toBe(42);
    expect((await run('codes', 'kill -KILL $$')).code).toBe(137);
    const failed = await run('codes', 'echo x > f.txt; exit 3', { flags: ['--commit-on-exit', '-m', 'not this'] });
    expect(failed.code).toBe(3);
    expect(failed.stderr).toContain('not committed: the command exited with status 3');
    const ok = await run('codes', 'echo y > f.txt', { flags: ['--commit-on-exit', '-m', 'codes done'] });
    expectOk(ok);
    expect(ok.stderr).toMatch(/committed codes: commit \d+/);
    const commits = (await d.json<{ type: string; message?: string }[]>(['log', 'codes'])).filter((e) => e.type === 'AGENT_COMMIT_CREATED');
    expect(commits.map((c) => c.message)).toEqual(['codes done']);
    const json = await d.cli(['run', 'codes', '--json', '--', 'true']);
    expect(JSON.parse(json.stderr.trim())).toMatchObject({ agent: 'codes', created: false, exitCode: 0, commit: null });
  });

  describe('escape attempts', () => {
    it('writing the real workspace by its absolute path, by .., through /proc/self/root and a symlink lands in the agent', async () => {
      expectOk(await run('esc', `
        echo abs > "$WS/root-only.txt"
        cd "$WS/src/util" && echo dotdot > ../../../ws/dotdot.txt && cd /
        echo proc > "/proc/self/root$WS/proc.txt"
        echo link >> "$WS/abs-link.js"
        ln -s "$WS/a-target" "$WS/src/out-link" && echo via-link > "$WS/src/out-link"
        # Above the workspace is an empty skeleton, not the test's temp root.
        test "$(ls -A "$WS/..")" = ws
      `));
      expect(treeChecksum(ws)).toBe(wsSum);
      expect(await readAgent('esc', 'root-only.txt')).toBe('abs\n');
      expect(await readAgent('esc', 'dotdot.txt')).toBe('dotdot\n');
      expect(await readAgent('esc', 'proc.txt')).toBe('proc\n');
      expect(await readAgent('esc', 'src/index.js')).toContain('link');
      expect(await readAgent('esc', 'a-target')).toBe('via-link\n');
    });

    it('no process outside is visible: /proc/PID/cwd and /proc/PID/root of the daemon are not there; no descriptor leaks in', async () => {
      // cowfs run is given an extra descriptor (a socket, as a caller's connection would be): it must not reach the command.
      const proc = spawn(process.execPath, [CLI, 'run', 'esc', '--', 'bash', '-c', `
        test ! -e /proc/$DAEMON/cwd && test ! -e /proc/$DAEMON/root && echo daemon-invisible
        ls /proc | grep -E '^[0-9]+$' | wc -l
        for f in /proc/self/fd/*; do n=\${f##*/}; if [ "$n" -gt 2 ] && [ -e "$f" ]; then readlink "$f"; fi; done | wc -l
      `], { cwd: ws, env: { ...process.env, DAEMON: String(d.pid) }, stdio: ['ignore', 'pipe', 'pipe', 'pipe'] });
      started.push(proc);
      let out = '';
      proc.stdout!.on('data', (b) => { out += String(b); });
      expect(await new Promise((r) => proc.once('exit', r))).toBe(0);
      const [invisible, procs, extraFds] = out.trim().split('\n');
      expect(invisible).toBe('daemon-invisible');
      expect(Number(procs)).toBeLessThan(10);
      expect(extraFds).toBe('0');
    });

    it('the state directory cannot be read, and its socket cannot be reached', async () => {
      const r = await run('esc', `
        ls -A "$STATE" 2>&1 || true
        cat "$STATE/daemon.pid" 2>&1 || true
        node "$CLI" --state-dir "$STATE" ls 2>&1 || true
      `);
      expectOk(r);
      expect(r.stdout).toMatch(/ls: cannot access '.*\.cowfs': No such file or directory/);
      expect(r.stdout).toMatch(/daemon\.pid: No such file or directory/);
      expect(r.stdout).toMatch(/daemon is not running/);
    });

    it('a state directory outside the workspace is covered: empty and read-only inside', async () => {
      const ws2 = path.join(d.root, 'ws2');
      const state2 = path.join(outside, 'state2');
      fs.mkdirSync(ws2);
      fs.writeFileSync(path.join(ws2, 'f.txt'), 'f\n');
      const daemon = spawn(process.execPath, [CLI, 'daemon', '--workspace', ws2, '--state-dir', state2], { stdio: 'ignore' });
      started.push(daemon);
      try {
        await until('the second daemon', () => fs.existsSync(path.join(state2, 'daemon.sock')));
        const r = await d.cli(['--state-dir', state2, 'run', 'x', '--', 'bash', '-c', `
          ls -A "${state2}" | wc -l
          cat "${state2}/daemon.pid" 2>&1 || true
          { echo x > "${state2}/planted"; } 2>&1 || true
          cat f.txt && node "$CLI" status | grep -c '^agent  *x'
        `], { cwd: ws2, env: { CLI } });
        expectOk(r);
        expect(r.stdout).toMatch(/^0\n.*daemon\.pid: No such file or directory\n.*planted: Read-only file system\nf\n1\n$/s);
        expect(fs.existsSync(path.join(state2, 'planted'))).toBe(false);
      } finally {
        daemon.kill('SIGTERM');
        await new Promise((r) => (daemon.exitCode !== null ? r(null) : daemon.once('exit', r)));
      }
    });

    it('/etc and $HOME are read-only without --rw; --rw opens a path for writing; /tmp is private', async () => {
      fs.writeFileSync(path.join(d.root, 'tmp-marker'), 'outside');
      const r = await run('esc', `
        touch /etc/cowfs-escape 2>&1 || true
        touch "$HOME/cowfs-escape" 2>&1 || true
        echo from-sandbox > "$SHARED/written"
        test ! -e "$ROOT/tmp-marker" && echo tmp-private
        echo scratch > /tmp/scratch && cat /tmp/scratch
      `, { flags: ['--rw', shared], env: { ROOT: d.root } });
      expectOk(r);
      expect(r.stdout).toMatch(/touch: cannot touch '\/etc\/cowfs-escape': Read-only file system/);
      expect(r.stdout).toMatch(/cowfs-escape': Read-only file system/);
      expect(r.stdout).toContain('tmp-private');
      expect(fs.existsSync('/etc/cowfs-escape')).toBe(false);
      expect(fs.readFileSync(path.join(shared, 'written'), 'utf8')).toBe('from-sandbox\n');
      expect(fs.existsSync('/tmp/scratch')).toBe(false);
    });

    it('a sibling agent\'s mount is not visible, mounted before or after the sandbox started', async () => {
      const before = path.join(outside, 'before');
      const after = path.join(outside, 'after');
      fs.mkdirSync(before);
      fs.mkdirSync(after);
      await d.json(['mount', 'sib1', before]);
      fs.writeFileSync(path.join(before, 'secret.txt'), 'sib1');
      const s = spawnRun('esc', `
        ls -A "$BEFORE"; echo "[before listed]"
        echo pwned > "$BEFORE/secret.txt" || true
        touch "$SHARED/started"
        until [ -e "$SHARED/go" ]; do sleep 0.05; done
        ls -A "$AFTER"; echo "[after listed]"
        cat "$AFTER/secret2.txt" 2>&1 || true
      `, ['--rw', shared]);
      try {
        await until('the sandbox', () => fs.existsSync(path.join(shared, 'started')));
        await d.json(['mount', 'sib2', after]);
        fs.writeFileSync(path.join(after, 'secret2.txt'), 'sib2');
        fs.writeFileSync(path.join(shared, 'go'), '');
        expect(await s.exit).toBe(0);
      } finally {
        await d.cli(['unmount', 'sib1']);
        await d.cli(['unmount', 'sib2']);
      }
      expect(s.output()).toMatch(/^\[before listed\]$/m);
      expect(s.output()).not.toContain('secret.txt\n[before');
      expect(s.output()).toMatch(/secret\.txt: Read-only file system/);
      expect(s.output()).toMatch(/^\[after listed\]$/m);
      expect(s.output()).toMatch(/secret2\.txt: No such file or directory/);
      expect(await readAgent('sib1', 'secret.txt')).toBe('sib1');
    });

    it('cowfs inside works for its own agent alone: rm, commit, log, show, events of another are refused', async () => {
      await d.json(['mount', 'other', d.mnt('other')]);
      fs.writeFileSync(path.join(d.mnt('other'), 'o.txt'), 'other\n');
      await d.json(['unmount', 'other']);
      const otherSeq = (await d.json<{ seq: number; agent: string }[]>(['log', 'other'])).at(-1)!.seq;
      const r = await run('esc', `
        for args in "rm other" "commit other -m x" "log other" "conflicts other" "status other" "show ${otherSeq}" \
                    "events --agent other" "diff other" "undo other" "mount other /tmp" "unmount esc" "rm esc" \
                    "config refine on" "land esc" "export esc --out /tmp/bundle" "gc" "have"; do
          node "$CLI" $args 2>&1 && echo "ALLOWED: $args" || true
        done
        node "$CLI" diff | grep -c '^diff --git' || true
        node "$CLI" ls
        node "$CLI" ls --json
      `);
      expectOk(r);
      expect(r.stdout).not.toContain('ALLOWED');
      expect(r.stdout).toContain('cowfs rm is not allowed inside the sandbox of agent esc');
      expect(r.stdout).toContain('cowfs can only use esc, not other');
      expect(r.stdout).toContain(`event ${otherSeq} belongs to another agent`);
      expect(r.stdout).toContain('cowfs config (changing a setting) is not allowed');
      expect(r.stdout).toContain('cowfs land is not allowed inside the sandbox of agent esc');
      const listed = JSON.parse(r.stdout.slice(r.stdout.lastIndexOf('[\n'))) as { name: string }[];
      expect(listed.map((a) => a.name)).toEqual(['esc']);
      // And the other agent is untouched.
      expect(await readAgent('other', 'o.txt')).toBe('other\n');
    });
  });

  it('two agents run at once at the same absolute path and never see each other\'s writes', async () => {
    const script = (me: string, peer: string) => `
      echo ${me} > "$WS/who.txt"
      echo ${me} >> "$WS/src/index.js"
      touch "$SHARED/${me}-ready"
      until [ -e "$SHARED/${peer}-ready" ]; do sleep 0.05; done
      sleep 0.3
      cat "$WS/who.txt" > "$SHARED/${me}-saw"
      grep -c -E '^(alpha|beta)$' "$WS/src/index.js" >> "$SHARED/${me}-saw"
    `;
    const a = spawnRun('alpha', script('alpha', 'beta'), ['--rw', shared]);
    const b = spawnRun('beta', script('beta', 'alpha'), ['--rw', shared]);
    expect(await a.exit).toBe(0);
    expect(await b.exit).toBe(0);
    expect(fs.readFileSync(path.join(shared, 'alpha-saw'), 'utf8')).toBe('alpha\n1\n');
    expect(fs.readFileSync(path.join(shared, 'beta-saw'), 'utf8')).toBe('beta\n1\n');
    expect(treeChecksum(ws)).toBe(wsSum);
  });

  describe('signals and cleanup', () => {
    it('SIGTERM and SIGINT sent to cowfs run reach the command', async () => {
      for (const [sig, code] of [['SIGTERM', 5], ['SIGINT', 6]] as const) {
        const s = spawnRun('sig', `trap 'echo got-TERM; exit 5' TERM; trap 'echo got-INT; exit 6' INT; echo ready; sleep 60 & wait`);
        await until('ready', () => s.output().includes('ready'));
        s.proc.kill(sig);
        expect(await s.exit).toBe(code);
        expect(s.output()).toContain(`got-${sig.slice(3)}`);
      }
      expect(runMounts(d)).toEqual([]);
    });

    it('Ctrl-C typed in a terminal reaches the command, which can exit cleanly', async () => {
      // script(1) gives cowfs run a real terminal; the ^C byte becomes SIGINT in the terminal driver.
      // The terminal is the command's: a tty on stdin, raw mode can be set (as an interactive claude does).
      const inner = `test -t 0 || exit 99; stty raw -echo && stty sane || exit 98; trap 'echo got-INT; exit 9' INT; echo ready; sleep 60 & wait`;
      const cmd = [process.execPath, CLI, 'run', 'tty', '--', 'bash', '-c', inner].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ');
      const proc = spawn('script', ['-qfec', `exec ${cmd}`, '/dev/null'], { cwd: ws, stdio: ['pipe', 'pipe', 'pipe'] });
      started.push(proc);
      let out = '';
      proc.stdout.on('data', (b) => { out += String(b); });
      const exit = new Promise<number | null>((r) => proc.once('exit', (c) => r(c)));
      await until('ready', () => out.includes('ready'));
      proc.stdin.write('\x03');
      expect(await exit).toBe(9);
      expect(out).toContain('got-INT');
    });

    it('Ctrl-Z stops the command with cowfs run, and continuing cowfs run continues it', async () => {
      const inner = 'i=0; while true; do i=$((i+1)); echo "tick $i"; sleep 0.1; done';
      const cmd = [process.execPath, CLI, 'run', 'tty', '--', 'bash', '-c', inner].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ');
      const proc = spawn('script', ['-qfec', `exec ${cmd}`, '/dev/null'], { cwd: ws, stdio: ['pipe', 'pipe', 'pipe'] });
      started.push(proc);
      let out = '';
      proc.stdout.on('data', (b) => { out += String(b); });
      const ticks = () => (out.match(/tick \d+/g) ?? []).length;
      try {
        await until('ticks', () => ticks() > 2);
        proc.stdin.write('\x1a');
        // Stopped: no tick for a second (the ticks already on their way through script's pipe arrive first).
        let seen = ticks();
        let since = Date.now();
        await until('the ticks to stop', () => {
          if (ticks() !== seen) [seen, since] = [ticks(), Date.now()];
          return Date.now() - since >= 1000;
        });
        const stopped = ticks();
        await sleep(600);
        expect(ticks()).toBe(stopped);
        // What `fg` does: SIGCONT to the stopped job (cowfs run, the child of script; script stops itself with it).
        const cowfsRun = Number(fs.readFileSync(`/proc/${proc.pid}/task/${proc.pid}/children`, 'utf8').trim().split(' ')[0]);
        process.kill(cowfsRun, 'SIGCONT');
        process.kill(proc.pid!, 'SIGCONT');
        await until('ticks again', () => ticks() > stopped + 2);
        proc.stdin.write('\x03');
        expect(await new Promise((r) => proc.once('exit', r))).toBe(130);
      } finally {
        if (proc.exitCode === null) proc.kill('SIGKILL');
      }
    });

    it('no mount or process is left when the command is killed, or when cowfs run itself is', async () => {
      // The marker reaches the processes through the environment, so the cowfs run process's own argv lacks it.
      const marker = `marker-${process.pid}-${Date.now()}`;
      // The command leaves a background process behind; SIGKILL of the command.
      const s = spawnRun('killed', '(exec -a "$M-bg" sleep 300) & echo ready; exec -a "$M-fg" sleep 300', [], { M: marker });
      // Both started: the background one is a subshell that execs sleep when it gets to run.
      await until('ready', () => processesWith(`${marker}-fg`).length > 0 && processesWith(`${marker}-bg`).length > 0);
      expect(runMounts(d)).toEqual([path.join(d.stateDir, 'mnt', 'killed')]);
      expect(processesWith(`${marker}-bg`)).toHaveLength(1);
      process.kill(processesWith(`${marker}-fg`)[0]!, 'SIGKILL');
      expect(await s.exit).toBe(137);
      expect(runMounts(d)).toEqual([]);
      // Killed with the sandbox's pid namespace: gone once the kernel has run their exits.
      await until('the background process to end', () => processesWith(marker).length === 0);

      // SIGKILL of cowfs run: the sandbox dies with it, the daemon ends the run when its connection drops.
      const t = spawnRun('killed', 'echo ready; exec -a "$M-orphan" sleep 300', [], { M: marker });
      await until('ready', () => processesWith(`${marker}-orphan`).length > 0);
      t.proc.kill('SIGKILL');
      await t.exit;
      await until('the sandbox to end', () => processesWith(marker).length === 0);
      await until('the run mount to go', () => runMounts(d).length === 0);
    });
  });

  it('--user runs unprivileged: permissions are enforced, new files are the user\'s, and cowfs still works', async () => {
    const r = await run('unpriv', `
      id -u
      echo "home=$HOME"
      echo mine > "$WS/shared/new.txt" && stat -c %u "$WS/shared/new.txt"
      echo nope >> "$WS/root-only.txt" 2>&1 || echo refused-root-only
      : > "$WS/root-only.txt" 2>/dev/null || echo refused-truncate
      touch /tmp/x && echo tmp-writable
      node "$CLI" status | grep -c 'agent      unpriv'
      test ! -e /proc/$DAEMON/root && echo daemon-invisible
      echo x > /proc/sys/kernel/core_pattern 2>/dev/null || echo sysctl-refused
    `, { flags: ['--user', 'nobody'], env: { DAEMON: String(d.pid) } });
    expectOk(r);
    expect(r.stdout.trim().split('\n')).toEqual([
      '65534', 'home=/nonexistent', '65534', 'refused-root-only', 'refused-truncate', 'tmp-writable', '1', 'daemon-invisible', 'sysctl-refused',
    ]);
    expect(await readAgent('unpriv', 'shared/new.txt')).toBe('mine\n');
    expect(await readAgent('unpriv', 'root-only.txt')).toBe('root\n');
  });

  it('a sandbox nested inside (as Claude Code\'s or srt\'s: bwrap with its own user, pid and network namespaces and /proc) works with --user', async () => {
    const r = await run('unpriv', `
      bwrap --ro-bind / / --dev /dev --proc /proc --unshare-user --unshare-net --unshare-pid --bind "$WS/shared" "$WS/shared" -- \
        sh -c 'echo nested > "$WS/shared/nested.txt"; ls /proc | grep -cE "^[0-9]+$"'
    `, { flags: ['--user', 'nobody'] });
    expectOk(r);
    expect(Number(r.stdout.trim())).toBeLessThan(5);
    expect(await readAgent('unpriv', 'shared/nested.txt')).toBe('nested\n');
    expect(treeChecksum(ws)).toBe(wsSum);
  });

  it('--net none leaves only the loopback interface', async () => {
    const ifaces = (net: string[]) => run('net', 'node -p "Object.keys(require(\'os\').networkInterfaces()).join(\',\')"', { flags: net });
    const none = await ifaces(['--net', 'none']);
    expectOk(none);
    expect(none.stdout.trim()).toBe('lo');
    const host = await ifaces([]);
    expect(host.stdout.trim().split(',').length).toBeGreaterThan(1);
  });

  it('reuses an agent\'s own mount and maps a working directory inside it', async () => {
    const mnt = d.mnt('own');
    await d.json(['mount', 'own', mnt]);
    fs.mkdirSync(path.join(mnt, 'src/own-dir'), { recursive: true });
    try {
      const r = await run('own', 'pwd; test -d "$WS/src/own-dir" && echo sees-own-dir', { cwd: path.join(mnt, 'src') });
      expectOk(r);
      expect(r.stdout).toBe(`${ws}/src\nsees-own-dir\n`);
      // Its own mount stays: the run did not make it, so the run does not remove it.
      expect(listFuseMounts().some((m) => m.mountpoint === mnt)).toBe(true);
    } finally {
      await d.json(['unmount', 'own']);
    }
  });

  it('a start that fails removes the agent it created, and leaves an existing one as it was', async () => {
    const names = async () => (await d.json<{ name: string }[]>(['ls'])).map((a) => a.name);
    // The sandbox cannot start: an `unshare` on PATH that cannot be executed (its interpreter is missing).
    const broken = path.join(d.root, 'broken-bin');
    fs.mkdirSync(broken, { recursive: true });
    fs.writeFileSync(path.join(broken, 'unshare'), '#!/nonexistent/interpreter\n', { mode: 0o755 });
    fs.symlinkSync(execFileSync('sh', ['-c', 'command -v bwrap'], { encoding: 'utf8' }).trim(), path.join(broken, 'bwrap'));
    const env = { PATH: broken };
    const r1 = await d.cli(['run', 'stillborn', '--', 'true'], { env });
    expect(r1.code).toBe(1);
    expect(r1.stderr).toMatch(/unshare .*not installed \(agent stillborn, created for this run, was removed again\)/);
    expect(await names()).not.toContain('stillborn');
    expectOk(await run('kept', 'echo mine > "$WS/kept.txt"'));
    const r2 = await d.cli(['run', 'kept', '--', 'true'], { env });
    expect(r2.code).toBe(1);
    expect(await names()).toContain('kept');
    expect(await readAgent('kept', 'kept.txt')).toBe('mine\n');
    // The mount fails: the run mountpoint is taken by a file.
    fs.mkdirSync(path.join(d.stateDir, 'mnt'), { recursive: true });
    fs.writeFileSync(path.join(d.stateDir, 'mnt', 'unmountable'), '');
    try {
      const r3 = await d.cli(['run', 'unmountable', '--', 'true']);
      expect(r3.code).toBe(1);
      expect(await names()).not.toContain('unmountable');
    } finally {
      fs.rmSync(path.join(d.stateDir, 'mnt', 'unmountable'));
    }
    expect(runMounts(d)).toEqual([]);
  });

  it('refuses bad options with a clear message and creates nothing', async () => {
    const cases: [string[], RegExp][] = [
      [['--net', 'bridge'], /--net bridge: use host \(the default\) or none/],
      [['--rw', '/nonexistent/cache'], /--rw \/nonexistent\/cache: no such file or directory/],
      [['--rw', path.join(ws, 'src')], /is inside the workspace/],
      [['--commit-on-exit'], /--commit-on-exit needs a commit message/],
      [['--user', 'no-such-user-here'], /--user no-such-user-here: no such user/],
      [['--user', 'root'], /--user root is root; leave out --user/],
      [['-m', 'msg'], /-m is the message of --commit-on-exit/],
    ];
    for (const [flags, msg] of cases) {
      const r = await d.cli(['run', 'refused', ...flags, '--', 'true']);
      expect(r.code, flags.join(' ')).toBe(1);
      expect(r.stderr, flags.join(' ')).toMatch(msg);
    }
    expect((await d.json<{ name: string }[]>(['ls'])).map((a) => a.name)).not.toContain('refused');
    const help = await d.cli(['run', '--help']);
    expect(help.stdout).toContain('cowfs run fix-auth -- claude');
  });
});
