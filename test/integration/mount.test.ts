import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '../../src/cli/client.js';
import { listFuseMounts } from '../../src/fuse/mount-table.js';
import { hash64, initHash } from '../../src/store/hash.js';
import { TestDaemon, treeChecksum } from '../helpers/daemon.js';
import { writeFile, writeSampleProject } from '../helpers/project.js';
import { holdFile, type HeldFile } from '../helpers/writer.js';

/** A workspace that is a git repo with a node_modules and a local package, as users have. */
function prepareProject(ws: string): void {
  writeSampleProject(ws, () => {
    writeFile(ws, '.gitignore', 'node_modules/\n.env\n');
    writeFile(ws, '.env', 'SECRET=1\n');
    writeFile(ws, 'local-pkg/package.json', JSON.stringify({ name: 'local-pkg', version: '0.0.1', main: 'index.js' }));
    writeFile(ws, 'local-pkg/index.js', 'module.exports = 42;\n');
    fs.symlinkSync('src/index.js', path.join(ws, 'main-link.js'));
  });
}

describe('cowfs mount: a real copy-on-write FUSE mount per agent', () => {
  let d: TestDaemon;
  let wsSum: string;

  beforeAll(async () => {
    d = TestDaemon.create(prepareProject);
    wsSum = treeChecksum(d.workspace);
    await d.start();
  });

  afterAll(async () => {
    await d?.destroy();
  });

  it('mounts an agent that inherits everything, ignored files included', async () => {
    const mnt = d.mnt('a');
    const r = await d.json(['mount', 'a', mnt]);
    expect(r).toMatchObject({ name: 'a', mounted: true, created: true, mountpoint: mnt });
    expect(d.sh('cat .env; cat node_modules/left-pad/package.json; readlink main-link.js', mnt))
      .toContain('SECRET=1');
    expect(d.sh('ls -A', mnt).split('\n')).not.toContain('.cowfs');
    expect(d.sh('node test.js', mnt).trim()).toBe('ok');
    expect(d.sh("node -e \"console.log(require('left-pad')('a', 3))\"", mnt)).toBe('  a\n');
    // tar compares stat and fstat of every file it reads: they must agree ("file changed as we read it" otherwise).
    d.sh('tar cf /dev/null .', mnt);
  });

  it('git status, add, commit, log work inside and write only into the agent', async () => {
    const mnt = d.mnt('a');
    expect(d.sh('git status --porcelain', mnt)).toBe('');
    d.sh("echo '// more' >> src/index.js && git add -A && git -c user.email=a@a -c user.name=a commit -qm 'agent a change'", mnt);
    expect(d.sh('git log --oneline | wc -l', mnt).trim()).toBe('2');
    expect(d.sh('git status --porcelain', mnt)).toBe('');
    expect(d.sh('git log --oneline | wc -l', d.workspace).trim()).toBe('1');
    expect(treeChecksum(d.workspace)).toBe(wsSum);
  });

  it('runs the usual tools: sed -i, mv, rm -rf, mkdir -p, ln -s, chmod +x, truncate, npm install', async () => {
    const mnt = d.mnt('a');
    d.sh([
      "sed -i 's/toUpperCase/toLowerCase/' src/util/strings.js",
      'mv test.js test-renamed.js',
      'mv src/util src/helpers',
      'mkdir -p deep/a/b/c && echo deep > deep/a/b/c/file',
      'ln -s deep/a/b/c/file deep-link',
      "printf '#!/bin/sh\\necho script-ran\\n' > run.sh && chmod +x run.sh",
      'cp -r node_modules/left-pad vendor-copy',
      'rm -rf vendor-copy',
      'truncate -s 3 .env',
    ].join(' && '), mnt);
    expect(d.sh('./run.sh', mnt)).toBe('script-ran\n');
    expect(d.sh('cat src/helpers/strings.js', mnt)).toContain('toLowerCase');
    expect(d.sh('ls src', mnt).split('\n').filter(Boolean).sort()).toEqual(['helpers', 'index.js']);
    expect(d.sh('cat deep-link', mnt)).toBe('deep\n');
    expect(d.sh('cat .env', mnt)).toBe('SEC');
    expect(d.sh('test ! -e vendor-copy && test ! -e test.js && echo gone', mnt)).toBe('gone\n');
    d.sh('npm install --offline --no-audit --no-fund ./local-pkg >/dev/null 2>&1', mnt);
    expect(d.sh("node -e \"console.log(require('local-pkg'))\"", mnt)).toBe('42\n');
    expect(treeChecksum(d.workspace)).toBe(wsSum);
  });

  it('keeps files working for the process holding them across rename and unlink; stat, chown, touch, df', async () => {
    const mnt = d.mnt('a');
    const script = [
      "const fs = require('fs');",
      "const fd = fs.openSync('held.txt', 'w+');",
      "fs.writeSync(fd, 'before ');",
      "fs.renameSync('held.txt', 'held-renamed.txt');",
      "fs.writeSync(fd, 'after-rename ');",
      "const ino = fs.fstatSync(fd).ino;",
      "if (fs.statSync('held-renamed.txt').ino !== ino) throw new Error('inode changed on rename');",
      "fs.unlinkSync('held-renamed.txt');",
      "fs.writeSync(fd, 'after-unlink');",
      "const st = fs.fstatSync(fd);",
      "const buf = Buffer.alloc(st.size); fs.readSync(fd, buf, 0, st.size, 0);",
      "fs.closeSync(fd);",
      "console.log(st.size, buf.toString(), fs.existsSync('held-renamed.txt'));",
    ].join('\n');
    expect(d.sh(`node -e "${script}"`, mnt).trim()).toBe('32 before after-rename after-unlink false');
    d.sh('touch -d "2001-02-03 04:05:06" stamped && chown 1234:5678 stamped', mnt);
    expect(d.sh('stat -c "%U:%G %u:%g %Y" stamped', mnt).trim()).toMatch(/^\S+:\S+ 1234:5678 981173106$/);
    expect(d.sh('df -P . | tail -1 | wc -w', mnt).trim()).toBe('6');
    d.sh("printf '#!/bin/sh\\n' > exec.sh && chmod 755 exec.sh", mnt);
    expect(d.sh('test -r src/index.js && test -w src/index.js && test -x exec.sh && test ! -x src/index.js && echo access-ok', mnt)).toBe('access-ok\n');
  });

  it("a directory's mtime moves when a name is made, removed or moved in it (git's untracked cache relies on it)", async () => {
    const mnt = d.mnt('a');
    const OLD = 978307200; // 2001-01-01, set with touch -d before each change
    const after = (change: string) => Number(d.sh(`touch -d @${OLD} dirtimes src && ${change} && stat -c %Y dirtimes`, mnt));
    d.sh('mkdir dirtimes && touch dirtimes/kept', mnt);
    expect(after('touch dirtimes/new')).toBeGreaterThan(OLD);
    expect(after('mv dirtimes/new dirtimes/moved')).toBeGreaterThan(OLD);
    expect(after('rm dirtimes/moved')).toBeGreaterThan(OLD);
    expect(after('mkdir dirtimes/sub && ln -s kept dirtimes/link')).toBeGreaterThan(OLD);
    expect(after('true')).toBe(OLD); // a time set explicitly stays
    // An inherited directory: git status with the untracked cache sees a new file in it.
    const status = () => d.sh('git -c core.untrackedCache=true status --porcelain --untracked-files=all src', mnt);
    expect(status()).not.toContain('src/untracked.js');
    d.sh('echo new > src/untracked.js', mnt);
    expect(status()).toContain('?? src/untracked.js\n');
    d.sh('rm -r dirtimes src/untracked.js && git update-index --no-untracked-cache', mnt);
  });

  it('writes and reads back 200 MiB with the same checksum', async () => {
    const mnt = d.mnt('a');
    const sum = d.sh('dd if=/dev/urandom of=big.bin bs=1M count=200 status=none && md5sum < big.bin', mnt);
    expect(d.sh('md5sum < big.bin', mnt)).toBe(sum);
    expect(fs.statSync(path.join(mnt, 'big.bin')).size).toBe(200 * 1024 * 1024);
    d.sh('rm big.bin', mnt);
  });

  it('keeps siblings apart; a child sees its parent\'s commit, never its uncommitted writes', async () => {
    const a = d.mnt('a');
    const b = d.mnt('b');
    await d.json(['mount', 'b', b]);
    expect(d.sh('test -e run.sh && echo yes || echo no', b)).toBe('no\n');
    d.sh('echo from-b > only-b.txt', b);
    expect(d.sh('test -e only-b.txt && echo yes || echo no', a)).toBe('no\n');
    await d.json(['commit', 'a', '-m', 'a work']);
    d.sh('echo uncommitted > after-commit.txt', a);
    const c = d.mnt('c');
    await d.json(['mount', 'c', c, '--parent', 'a']);
    expect(d.sh('./run.sh', c)).toBe('script-ran\n');
    expect(d.sh('test -e after-commit.txt && echo yes || echo no', c)).toBe('no\n');
    // Inside a mount the CLI finds its daemon and its agent by itself.
    const st = await d.json(['status'], { cwd: path.join(c, 'src') });
    expect(st.agent.name).toBe('c');
    // …and says which FUSE adapter serves it (the one this suite runs on).
    expect(st.adapter).toMatch(new RegExp(`^${process.env.COWFS_TEST_FUSE ?? 'libfuse'}`));
    const ls = await d.json<any[]>(['ls']);
    expect(ls.map((x) => `${x.name}<${x.parent}`).sort()).toEqual(['a<null', 'b<null', 'c<a']);
    expect(treeChecksum(d.workspace)).toBe(wsSum);
  });

  it('refuses bad input with clear errors', async () => {
    const r1 = await d.cli(['mount', 'Bad_Name', d.mnt('bad')]);
    expect(r1.code).toBe(1);
    expect(r1.stderr).toMatch(/invalid agent name/);
    const r2 = await d.cli(['mount', 'x', path.join(d.root, 'missing-dir')]);
    expect(r2.stderr).toMatch(/does not exist/);
    // Asked past the kernel's attribute cache of the mount (libfuse 2: 1 s), a check that stat'ed it
    // was a request of the daemon to itself: a deadlock.
    const a = d.mnt('a');
    await new Promise((r) => setTimeout(r, 1100));
    const r3 = await d.cli(['mount', 'x', a]);
    expect(r3.stderr).toMatch(/busy/);
    const r4 = await d.cli(['mount', 'y', d.mnt('y'), '--parent', 'nobody']);
    expect(r4.stderr).toMatch(/no agent named "nobody"/);
    const r5 = await d.cli(['commit', 'nobody', '-m', 'x']);
    expect(r5.stderr).toMatch(/no agent named/);
    const r6 = await d.cli(['mount', 'z', d.workspace]);
    expect(r6.stderr).toMatch(/hide the workspace/);
    // Over a project directory: every tree would hide it.
    const r6b = await d.cli(['mount', 'z', path.join(d.workspace, 'src')]);
    expect(r6b.stderr).toMatch(/inside the workspace and not empty/);
    expect(d.sh('ls src', a)).toContain('index.js');
    // Inside another agent's mount: refused before anything reads it (the daemon stat'ing a path in
    // its own mount would wait for itself: every mount and the API would hang).
    d.sh('mkdir -p sub', a);
    const r6c = await d.cli(['mount', 'w', path.join(a, 'sub')]);
    expect(r6c.stderr).toMatch(/overlaps the mount of agent a/);
    // An event number that is none is refused, not taken for the latest (NaN travelled as null).
    for (const args of [['replay', 'a', '--to', 'abc', '--out', path.join(d.root, 'r-abc')], ['log', 'a', '--since', 'abc']]) {
      const r = await d.cli(args);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe('cowfs: not an event number: abc\n');
    }
    for (const outside of ['../x', '/etc']) expect((await d.cli(['diff', 'a', '--', outside])).stderr).toBe(`cowfs: ${outside} is outside the tree: give paths relative to its root\n`);
    const r6d = await d.cli(['replay', 'a', '--to', '99999999', '--out', path.join(d.root, 'r-far')]);
    expect(r6d.stderr).toMatch(/no event 99999999 yet \(the last is \d+\)/);
    const r7 = await d.cli(['status', '--json'], { cwd: d.root });
    expect(JSON.parse(r7.stdout).error.message).toMatch(/not inside a cowfs workspace/);
    expect((await d.json<any[]>(['ls'])).map((a) => a.name)).not.toContain('x');
    // A refused mountpoint leaves nothing in the log: no agent made, then removed.
    const events = (await d.cli(['events', '--json'])).stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l));
    expect(events.filter((e) => ['x', 'z', 'w'].includes(e.agent))).toEqual([]);
  });

  it('concurrent mounts of one agent make one FUSE mount: the same mountpoint joins, another is refused', async () => {
    const mountsOf = (agent: string) => listFuseMounts().filter((m) => m.source === `cowfs:${agent}@${d.stateDir}`).map((m) => m.mountpoint);
    const client = await Client.connect({ stateDir: d.stateDir, socket: path.join(d.stateDir, 'daemon.sock') });
    try {
      // Sent together on one connection: each arrives while the one before awaits its mount.
      const mp = d.mnt('race');
      const [first, second, elsewhere] = await Promise.allSettled([
        client.call('mount', { agent: 'race', mountpoint: mp }),
        client.call('mount', { agent: 'race', mountpoint: mp }),
        client.call('mount', { agent: 'race', mountpoint: d.mnt('race-other') }),
      ]);
      expect(first.status).toBe('fulfilled');
      expect(second.status).toBe('fulfilled');
      expect(elsewhere.status === 'rejected' && String(elsewhere.reason)).toMatch(/race is (being|already) mounted at .*race; unmount it first/);
      expect(mountsOf('race')).toEqual([mp]);
      // Two sandboxes started at once share one run mount, which the last to end unmounts.
      const runs = await Promise.all([1, 2].map(() => client.call<{ id: string; mountpoint: string }>('run.start', { agent: 'race-run', rw: [] })));
      expect(runs[0]!.mountpoint).toBe(runs[1]!.mountpoint);
      expect(mountsOf('race-run')).toEqual([runs[0]!.mountpoint]);
      // An unmount and a run.start at once: the run gets a live mount, never one being torn down.
      await client.call('run.end', { id: runs[0]!.id });
      const [, again] = await Promise.all([client.call('run.end', { id: runs[1]!.id }), client.call<{ id: string }>('run.start', { agent: 'race-run', rw: [] })]);
      expect(mountsOf('race-run')).toHaveLength(1);
      await client.call('run.end', { id: again.id });
      expect(mountsOf('race-run')).toEqual([]);
    } finally {
      client.close();
    }
    await d.json(['rm', 'race']);
    await d.json(['rm', 'race-run']);
    expect(mountsOf('race')).toEqual([]);
  });

  it('shows the same trees after unmount/remount and after a daemon restart', async () => {
    const a = d.mnt('a');
    const before = treeChecksum(a);
    await d.json(['unmount', 'a']);
    expect(fs.readdirSync(a)).toEqual([]);
    await d.json(['mount', 'a', a]);
    expect(treeChecksum(a)).toBe(before);
    const c = treeChecksum(d.mnt('c'));
    await d.stop();
    await d.start();
    expect(treeChecksum(a)).toBe(before);
    expect(treeChecksum(d.mnt('c'))).toBe(c);
  });

  it('after kill -9 every closed file reads back intact and the mounts come back', async () => {
    const a = d.mnt('a');
    d.sh('for i in $(seq 1 50); do echo "file $i" > crash-$i.txt; done; dd if=/dev/urandom of=crash.bin bs=1M count=8 status=none', a);
    const sum = d.sh('md5sum crash-*.txt crash.bin', a);
    await d.kill9();
    await d.start();
    expect(d.sh('md5sum crash-*.txt crash.bin', a)).toBe(sum);
    expect(treeChecksum(d.workspace)).toBe(wsSum);
  });

  it('rm removes an agent and its mount; --recursive for its children', async () => {
    const r = await d.cli(['rm', 'a']);
    expect(r.stderr).toMatch(/has children/);
    await d.json(['rm', 'a', '--recursive']);
    const names = (await d.json<any[]>(['ls'])).map((x) => x.name);
    expect(names).toEqual(['b']);
    expect(fs.readdirSync(d.mnt('a'))).toEqual([]);
  });
});

/**
 * What the libfuse 3 adapter's handles per node put at risk (it hears of no
 * OPEN and no RELEASE: a written file's put comes when its handle is idle
 * 500 ms (longer after many writes), at FORGET, at a truncation to 0 or when an API request settles
 * open files). libfuse 2 hears every close; the same behavior is expected
 * of both, except where a test says otherwise.
 */
const FUSE_UNDER_TEST = process.env.COWFS_TEST_FUSE ?? 'libfuse3';
// The kernel's writeback cache (off by default, `cowfs config writeCache on`) changes when written
// pages reach the daemon: every case below runs with and without it where the adapter has one.
const WRITE_CACHES = FUSE_UNDER_TEST === 'libfuse2' ? [false] : [false, true];

describe.each(WRITE_CACHES)('files written through a mount whose closes the daemon may not hear of (write cache %s)', (writeCache) => {
  const FUSE = FUSE_UNDER_TEST;
  let d: TestDaemon;
  let mnt: string;
  const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

  const openFiles = () => d.openFiles('w');
  const untilNoOpenFiles = () => d.untilNoOpenFiles('w');

  beforeAll(async () => {
    d = TestDaemon.create((ws) => writeFile(ws, 'doc.txt', 'line 1\nline 2\nline 3\n'));
    await d.start();
    if (writeCache) await d.json(['config', 'writeCache', 'on']);
    mnt = d.mnt('w');
    await d.json(['mount', 'w', mnt]);
    const [w] = await d.json<{ name: string; writeCache: boolean | null }[]>(['ls']);
    expect(w).toMatchObject({ name: 'w', writeCache });
  });

  afterAll(async () => {
    await d?.destroy();
  });

  it('a file written and closed survives a kill -9 within 100 ms: content, mode and mtime, in the mount, log and diff', async () => {
    const writing = Date.now();
    d.sh([
      "printf 'written just now\\n' > fresh.txt",
      "printf '#!/bin/sh\\necho stamped\\n' > stamped.sh && chmod 750 stamped.sh && touch -d @981173106 stamped.sh",
      "printf 'more\\n' >> doc.txt",
    ].join(' && '), mnt);
    const started = Date.now();
    // SIGKILL is sent at the call; the daemon's exit is awaited after the clock is read (a loaded machine reaps late).
    const killed = d.kill9();
    expect(Date.now() - started).toBeLessThan(100);
    await killed;
    // The dead daemon's mount fails cleanly, it does not hang.
    expect(d.sh('cat fresh.txt 2>&1 || true', mnt)).toMatch(/Transport endpoint is not connected/);
    await d.start();
    const look = 'cat fresh.txt stamped.sh doc.txt; stat -c "%n %a %Y %s" fresh.txt stamped.sh; ./stamped.sh';
    const after = d.sh(look, mnt);
    expect(after).toMatch(/^written just now\n#!\/bin\/sh\necho stamped\nline 1\nline 2\nline 3\nmore\nfresh.txt 644 \d+ 17\nstamped.sh 750 981173106 23\nstamped\n$/);
    const fresh = fs.statSync(path.join(mnt, 'fresh.txt')).mtimeMs;
    // Written between `writing` and `started` (to the second: the mtime may be coarser than the clock).
    expect(fresh).toBeGreaterThanOrEqual(writing - 1000);
    expect(fresh).toBeLessThanOrEqual(started + 1000);
    const diff = (await d.cli(['diff', 'w'])).stdout;
    expect(diff).toContain('+written just now');
    expect(diff).toMatch(/new file mode 100755\n[^]*\+echo stamped/);
    expect(diff).toContain('+more');
    const log = (await d.cli(['log', 'w'])).stdout;
    for (const p of ['fresh.txt', 'stamped.sh', 'doc.txt']) expect(log).toContain(p);
  });

  it('a kill -9 right after tar -x unpacked 300 files (their puts still waiting for the idle sweep) loses none', async () => {
    const src = path.join(d.root, 'unpack-src');
    for (let i = 0; i < 300; i++) writeFile(src, `d${i % 7}/f${i}.txt`, `file ${i}\n`);
    fs.chmodSync(path.join(src, 'd3/f3.txt'), 0o750);
    d.sh(`tar -cf ${d.root}/unpack.tar -C ${src} .`, d.root);
    d.sh(`mkdir unpacked && tar -xf ${d.root}/unpack.tar -C unpacked`, mnt);
    await d.kill9();
    await d.start();
    expect(d.sh('cat unpacked/d*/f*.txt | sort | md5sum; stat -c %a unpacked/d3/f3.txt', mnt))
      .toBe(d.sh('cat d*/f*.txt | sort | md5sum; stat -c %a d3/f3.txt', src));
    const puts = new Set((await d.json<{ type: string; path?: string }[]>(['log', 'w']))
      .filter((e) => e.type === 'put' && e.path?.startsWith('unpacked/')).map((e) => e.path));
    expect(puts.size).toBe(300);
  });

  it('mmap: a change through a shared writable mapping, msync, close: read back, and in the agent\'s commit', async () => {
    d.sh("printf 'mapped: aaaa\\n' > mapped.txt; printf 'unsynced: aaaa\\n' > unsynced.txt", mnt);
    d.sh([
      'import mmap',
      "with open('mapped.txt', 'r+b') as f:",
      '    m = mmap.mmap(f.fileno(), 0)',
      "    m[8:12] = b'BBBB'",
      '    m.flush()',
      '    m.close()',
      // No msync: the pages are written back at munmap + close (the kernel flushes them then).
      "with open('unsynced.txt', 'r+b') as f:",
      '    m = mmap.mmap(f.fileno(), 0)',
      "    m[10:14] = b'CCCC'",
      '    m.close()',
    ].map((l) => `${l}\n`).join('').replace(/^/, "python3 - <<'PY'\n").concat('PY\n'), mnt);
    expect(d.sh('cat mapped.txt unsynced.txt', mnt)).toBe('mapped: BBBB\nunsynced: CCCC\n');
    await d.json(['commit', 'w', '-m', 'mapped']);
    // A child mounted now sees the commit: what the mapping wrote is in the agent's layer.
    const kid = d.mnt('kid');
    await d.json(['mount', 'kid', kid, '--parent', 'w']);
    expect(d.sh('cat mapped.txt unsynced.txt', kid)).toBe('mapped: BBBB\nunsynced: CCCC\n');
    await d.json(['rm', 'kid']);
  });

  it('a writer keeps writing after another process renamed its file (content follows) or unlinked it (no error, shows nowhere)', async () => {
    const moved = holdFile(mnt, 'moving.txt', 'w');
    const gone = holdFile(mnt, 'gone.txt', 'w');
    const replaced = holdFile(mnt, 'replaced.txt', 'w');
    try {
      await moved.write('one ');
      await gone.write('kept ');
      await replaced.write('old ');
      d.sh('mv moving.txt moved.txt && rm gone.txt && echo new > tmp && mv tmp replaced.txt', mnt);
      await moved.write('two ');
      await gone.write('SECRET-1 ');
      await replaced.write('SECRET-2 ');
      await wait(800); // past the idle window: the adapter's handles were released (or pinned)
      d.sh('mv moved.txt moved-again.txt', mnt);
      await moved.write('three');
      await gone.write('SECRET-3');
      await replaced.write('SECRET-4');
      for (const w of [moved, gone, replaced]) expect(await w.close()).toEqual({ code: 0, stderr: '' });
    } finally {
      for (const w of [moved, gone, replaced]) w.kill();
    }
    expect(d.sh('cat moved-again.txt replaced.txt; ls', mnt)).toMatch(/^one two threenew\n/);
    expect(d.sh('ls', mnt)).not.toMatch(/moving|moved.txt|gone|tmp/);
    await wait(800);
    expect(d.sh('grep -rl SECRET . || true', mnt)).toBe('');
    expect((await d.cli(['diff', 'w'])).stdout).not.toContain('SECRET');
    // A new file of the same name starts empty.
    expect(d.sh('echo fresh > gone.txt && cat gone.txt', mnt)).toBe('fresh\n');
    expect(await untilNoOpenFiles()).toBe(0);
  });

  it('more files written than the adapter keeps handles for: no EMFILE, every content right, no handle left once idle', async () => {
    const n = 5000; // > NODE_HANDLES_MAX (4096)
    d.sh(`python3 -c "
import os
os.mkdir('many')
for i in range(${n}):
    with open(f'many/f{i}', 'w') as f: f.write(f'content {i}\\n')
"`, mnt);
    expect(d.sh(`python3 -c "
bad = [i for i in range(${n}) if open(f'many/f{i}').read() != f'content {i}\\n']
print(len(bad))
"`, mnt)).toBe('0\n');
    expect(await untilNoOpenFiles()).toBe(0);
    expect((await d.cli(['diff', 'w', '--name-only'])).stdout.split('\n').filter((l) => l.startsWith('many/'))).toHaveLength(n);
    d.sh('rm -r many', mnt);
    expect(await untilNoOpenFiles()).toBe(0);
  });

  it('a 40 MiB dd conv=fsync reads back intact after a kill -9 right after its fsync; a twin written later shares its blob', async () => {
    await initHash();
    const content = crypto.randomBytes(40 * 1024 * 1024);
    const src = path.join(d.root, 'src40.bin');
    fs.writeFileSync(src, content);
    d.sh(`dd if=${src} of=big.bin bs=1M conv=fsync status=none`, mnt);
    await d.kill9();
    await d.start();
    const sum = d.sh(`md5sum < ${src}`, d.root);
    expect(d.sh('md5sum < big.bin', mnt)).toBe(sum);
    // Written front to back: stored under its hash as written, which must be the one reading gives.
    d.sh(`dd if=${src} of=twin.bin bs=1M status=none`, mnt);
    await d.json(['commit', 'w', '-m', 'twins']);
    expect(d.sh('md5sum < twin.bin', mnt)).toBe(sum);
    const blobDir = path.join(d.stateDir, 'blobs');
    const large = fs.readdirSync(blobDir, { recursive: true, withFileTypes: true })
      .filter((e) => e.isFile() && fs.statSync(path.join(e.parentPath, e.name)).size === content.length)
      .map((e) => e.name);
    expect(large).toEqual([`${hash64(content)}-${content.length}`]);
  });

  it('libfuse 3: the handle of a file that wrote much is kept longer once idle, so an append after a pause needs no copy-up', async () => {
    if (FUSE === 'libfuse2') return; // every close is heard there
    d.sh('cat doc.txt >/dev/null', mnt); // the kernel has learnt that OPEN is not implemented: no RELEASE follows
    expect(await untilNoOpenFiles()).toBe(0);
    const since = (await d.json<{ lastSeq: number }>(['status'])).lastSeq + 1;
    // 500 MiB written through one handle, the same MiB over and over, each write straight to the daemon
    // (O_DIRECT, past the page cache): kept ~10 s once idle, far longer than the polls below take on a
    // loaded machine; small.txt's goes after 0.5 s.
    const MiB = 1024 * 1024;
    const rewrite = [
      "const fs = require('fs');",
      "const fd = fs.openSync('long.log', fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_DIRECT);",
      `const b = Buffer.alloc(${MiB}, 120);`,
      'for (let i = 0; i < 500; i++) fs.writeSync(fd, b, 0, b.length, 0);',
      'fs.closeSync(fd);',
    ].join('\n');
    d.sh(`node -e "${rewrite}"; echo small > small.txt`, mnt);
    // The written file's scratch file (what its open handle writes to), by name: a release turns it into
    // the stored blob and the next write copies the file up into a new one.
    const scratchDir = path.join(d.stateDir, 'scratch');
    const large = () => fs.readdirSync(scratchDir).filter((f) => fs.statSync(path.join(scratchDir, f)).size >= MiB);
    const held = large();
    expect(held).toHaveLength(1);
    // A pause long enough for an ordinary handle to go: small.txt's (polling through the API settles open
    // files, puts what they hold, but releases none).
    let n = await openFiles();
    for (const end = Date.now() + 30_000; n > 1 && Date.now() < end; await wait(100)) n = await openFiles();
    expect(n).toBe(1);
    d.sh('echo line >> long.log', mnt);
    expect(large()).toEqual(held);
    expect(fs.statSync(path.join(scratchDir, held[0]!)).size).toBe(MiB + 5);
    expect(d.sh('tail -c 5 long.log; stat -c %s long.log', mnt)).toBe(`line\n${MiB + 5}\n`);
    const puts = (await d.json<{ type: string; path?: string; entry?: { size: number } }[]>(['log', 'w', '--since', String(since)]))
      .filter((e) => e.path === 'long.log');
    expect(puts.at(-1)?.entry?.size).toBe(MiB + 5);
    d.sh('rm long.log small.txt', mnt);
    expect(await untilNoOpenFiles()).toBe(0);
  });

  it('echo a > f; echo b >> f; undo: the file as it was before the last event', async () => {
    d.sh('echo a > f.txt; echo b >> f.txt', mnt);
    // libfuse 3 hears no close of the append: whether the two writes are one put or two depends
    // on when the idle sweep runs. The undo must take back exactly the last one, whichever it was.
    expect(await untilNoOpenFiles()).toBe(0);
    const puts = (await d.json<{ type: string; path?: string }[]>(['log', 'w'])).filter((e) => e.type === 'put' && e.path === 'f.txt');
    await d.json(['undo', 'w']);
    if (FUSE === 'libfuse2') await wait(1100); // fuse-native cannot invalidate: attributes time out
    expect(puts.length).toBeGreaterThanOrEqual(1);
    expect(puts.length).toBeLessThanOrEqual(2);
    if (puts.length === 1) expect(d.sh('test -e f.txt && echo there || echo none', mnt)).toBe('none\n');
    else expect(d.sh('cat f.txt', mnt)).toBe('a\n');
    // Once the first write is put (its handle released), the append is a second event on both
    // adapters: the undo takes it back. Waiting for the release, not a fixed pause, keeps this
    // true on a loaded machine where the idle sweep runs late.
    d.sh('echo a > g.txt', mnt);
    expect(await untilNoOpenFiles()).toBe(0);
    d.sh('echo b >> g.txt', mnt);
    await d.json(['undo', 'w']);
    if (FUSE === 'libfuse2') await wait(1100);
    expect(d.sh('cat g.txt', mnt)).toBe('a\n');
  });

  // Not where the writer wins by design (docs/ARCHITECTURE.md, a retired node): libfuse 2 stores the
  // writer's whole file at its close; with the write cache its next flush writes its cached page back
  // whole, the undone bytes with it. Three rounds: the second undo under the same writer was lost (the
  // put after it held the run it took back: see forgetReaders).
  const UNDO_ROUNDS = 3;
  it.skipIf(FUSE === 'libfuse2' || writeCache)('undos while a process appends to the file: each takes back a run of its lines for good, the lines after stay', async () => {
    // The writer holds the file open across every undo and appends all through it (libfuse 3 without
    // the cache: its writes go to the addon). Each round: what came before is one event (`ls` settles),
    // then lines `during <round> <k>` from the first written before the undo on; the undo's settle puts
    // those so far as the last event and takes it back; the lines after it stay, then `kept <round>`.
    d.sh("printf 'base\\n' > appended.txt", mnt);
    expect(await untilNoOpenFiles()).toBe(0);
    const writer = holdFile(mnt, 'appended.txt', 'a');
    const written: number[] = [];
    /**
     * The file's lines are base, then per round some of its `during` lines and `kept`; of the `during`
     * lines one run is missing, never empty (what the undo took back; an idle handle's put may have
     * cut it short of the first), the rest in order, each once. No NULs: the kernel places a line written
     * after an undo at the end it knew, the daemon at the file's end (O_APPEND), not past a hole.
     */
    const check = () => {
      const text = d.sh('cat appended.txt', mnt);
      expect(text).not.toContain('\0');
      const lines = text.split('\n').slice(0, -1);
      expect(lines.filter((l) => !l.startsWith('during '))).toEqual(['base', ...written.map((_, i) => `kept ${i + 1}`)]);
      written.forEach((n, i) => {
        const round = lines.slice(i === 0 ? 1 : lines.indexOf(`kept ${i}`) + 1, lines.indexOf(`kept ${i + 1}`));
        const present = round.map((l) => {
          const m = /^during (\d+) (\d+)$/.exec(l);
          expect([l, m?.[1]]).toEqual([l, String(i + 1)]);
          return Number(m![2]);
        });
        const missing = Array.from({ length: n }, (_, k) => k + 1).filter((k) => !present.includes(k));
        expect(present).toEqual(Array.from({ length: n }, (_, k) => k + 1).filter((k) => !missing.includes(k)));
        expect(missing.length).toBeGreaterThan(0);
        expect(missing.at(-1)! - missing[0]! + 1).toBe(missing.length);
      });
    };
    try {
      await writer.opened;
      for (let i = 1; i <= UNDO_ROUNDS; i++) {
        await openFiles();
        await writer.burst(`during ${i}`);
        await d.json(['undo', 'w']);
        written.push(await writer.stop());
        await writer.write(`kept ${i}\n`);
        check();
      }
      expect(await writer.close()).toEqual({ code: 0, stderr: '' });
    } finally {
      writer.kill();
    }
    // Once the writer's file is released (stored from what its handle wrote): still so, stored as shown.
    expect(await untilNoOpenFiles()).toBe(0);
    check();
    const puts = (await d.json<{ path?: string; entry?: { size: number } }[]>(['log', 'w'])).filter((e) => e.path === 'appended.txt');
    expect(puts.at(-1)?.entry?.size).toBe(fs.statSync(path.join(mnt, 'appended.txt')).size);
  });

  // libfuse 3: after an undo the holder writes through the node the undo retired. Once its handle idles
  // out, the path's newer node is retired too, and until a process looks the path up again it has no
  // node, only the holder's. The next undo found no node at the path and left the holder's handle, whose
  // file kept standing for the path with the line the undo took back (seen under load in the rounds above).
  it.skipIf(FUSE === 'libfuse2' || writeCache)('an undo while the path has only the node an earlier undo retired (a holder appending through it): the line it took back stays gone', async () => {
    d.sh("printf 'base\\n' > retired.txt", mnt);
    expect(await untilNoOpenFiles()).toBe(0);
    const a = holdFile(mnt, 'retired.txt', 'a');
    try {
      await a.opened;
      await a.write('a1\n');
      await d.json(['undo', 'w']); // takes back a1; a's node retired
      expect(d.sh('cat retired.txt', mnt)).toBe('base\n'); // the path's new node
      await a.write('a2\n');
      expect(await untilNoOpenFiles()).toBe(0); // a's handle idled out: the path's node retired in turn
      await a.write('a3\n');
      await d.json(['undo', 'w']); // takes back a3, with no node at the path but a's
      await a.write('a4\n');
      expect(await a.close()).toEqual({ code: 0, stderr: '' });
    } finally {
      a.kill();
    }
    expect(await untilNoOpenFiles()).toBe(0);
    expect(d.sh('cat retired.txt', mnt)).toBe('base\na2\na4\n');
  });

  // libfuse 2: the writer's whole file wins at its close (a1 comes back). libfuse 3 without the write cache:
  // the daemon puts each O_APPEND line at the file's end, not at the end a's kernel node knows (the undo
  // gave the path a new node), where a3 landed over b's line b1. The reviewer saw a3 lost.
  it.skipIf(FUSE === 'libfuse2')('a writer whose file an undo changed writes on, a second process opens and writes it, `cowfs ls`, the first writes again: its line stays', async () => {
    d.sh("printf 'base\\n' > shared.txt", mnt);
    expect(await untilNoOpenFiles()).toBe(0);
    const a = holdFile(mnt, 'shared.txt', 'a');
    let b: HeldFile | undefined;
    try {
      await a.opened;
      await a.write('a1\n');
      await a.fsync();
      await d.json(['undo', 'w']); // takes back a1: shared.txt is base again, a's node retired
      await a.write('a2\n');
      await a.fsync();
      b = holdFile(mnt, 'shared.txt', 'a'); // opened now: the path's new node
      await b.opened;
      await b.write('b1\n');
      await b.fsync();
      await openFiles(); // settles
      await a.write('a3\n');
      await a.fsync();
      for (const w of [a, b]) expect(await w.close()).toEqual({ code: 0, stderr: '' });
    } finally {
      a.kill();
      b?.kill();
    }
    expect(await untilNoOpenFiles()).toBe(0);
    const lines = d.sh('cat shared.txt', mnt).replace(/\0+/g, '').split('\n');
    expect(lines[0]).toBe('base');
    const ours = lines.filter((l) => /^a\d$/.test(l));
    // With the write cache a's page, a1 in it, may be written back whole over the undo (the writer wins).
    expect(writeCache ? ours.filter((l) => l !== 'a1') : ours).toEqual(['a2', 'a3']);
    if (!writeCache) expect(lines).toEqual(['base', 'a2', 'b1', 'a3', '']);
  });

  // After the undo the path has a new node and the first writer keeps the one the undo retired: two kernel
  // inodes for one file, each placing an O_APPEND write at its own idea of the size. A line of one writer
  // landed over the other's last line, or past the end with NULs before it. Not with the write cache, where
  // the writer's whole page wins (see above); libfuse 2 hands O_APPEND to the tree at the open.
  it.skipIf(FUSE === 'libfuse2' || writeCache)('two processes append to a file an undo changed, one through the node the undo retired, the other through the path\'s new node: every line once, no NUL', async () => {
    d.sh("printf 'base\\n' > two.txt", mnt);
    expect(await untilNoOpenFiles()).toBe(0);
    const a = holdFile(mnt, 'two.txt', 'a');
    let b: HeldFile | undefined;
    const inOrder = ['base'];
    let bursts: number[] = [];
    try {
      await a.opened;
      await a.write('a0\n');
      await d.json(['undo', 'w']); // takes back a0: two.txt is base again, a's node retired
      b = holdFile(mnt, 'two.txt', 'a'); // opened now: the path's new node
      await b.opened;
      for (let i = 1; i <= 3; i++) {
        for (const [w, name] of [[a, 'a'], [b, 'b']] as const) {
          await w.write(`${name}${i}\n`);
          inOrder.push(`${name}${i}`);
        }
      }
      // Then both at once, as fast as the mount takes them.
      await Promise.all([a.burst('a burst'), b.burst('b burst')]);
      await wait(300);
      bursts = await Promise.all([a.stop(), b.stop()]);
      for (const w of [a, b]) expect(await w.close()).toEqual({ code: 0, stderr: '' });
    } finally {
      a.kill();
      b?.kill();
    }
    expect(await untilNoOpenFiles()).toBe(0);
    const text = d.sh('cat two.txt', mnt);
    expect(text).not.toContain('\0');
    const lines = text.split('\n').slice(0, -1);
    expect(lines.slice(0, inOrder.length)).toEqual(inOrder);
    // The bursts: every byte once (nothing written over, nothing twice), each writer's lines in order. A
    // line its kernel sent in two WRITEs (it splits a write at the end of a page it does not hold) may have
    // the other's line between its halves: kept whole on a disk, not here (ARCHITECTURE.md).
    const burstLines = ['a', 'b'].map((name, i) => Array.from({ length: bursts[i]! }, (_, k) => `${name} burst ${k + 1}`));
    const rest = lines.slice(inOrder.length);
    expect(Buffer.byteLength(rest.map((l) => `${l}\n`).join(''))).toBe(Buffer.byteLength(burstLines.flat().map((l) => `${l}\n`).join('')));
    ['a', 'b'].forEach((name, i) => {
      const whole = rest.filter((l) => new RegExp(`^${name} burst \\d+$`).test(l));
      const seen = new Set(whole);
      expect(whole).toEqual(burstLines[i]!.filter((l) => seen.has(l)));
      expect(whole.length).toBeGreaterThan(burstLines[i]!.length * 0.9);
    });
    // Stored as shown.
    const puts = (await d.json<{ path?: string; entry?: { size: number } }[]>(['log', 'w'])).filter((e) => e.path === 'two.txt');
    expect(puts.at(-1)?.entry?.size).toBe(Buffer.byteLength(text));
  });

  it('a file truncated while it is written, then written on past the cut, is stored under the id of what it holds (a copy of it is the same blob)', async () => {
    // Without the cache the addon writes (and hashes) the file; the truncation goes to JavaScript.
    // Whole pages: a partial one would make the kernel read it first, which takes the file back.
    d.sh(`python3 -c "import os; fd = os.open('cut.bin', os.O_WRONLY | os.O_CREAT | os.O_TRUNC); os.write(fd, b'a' * 8192); os.ftruncate(fd, 4096); os.write(fd, b'b' * 4096); os.close(fd)"`, mnt);
    expect(await untilNoOpenFiles()).toBe(0);
    d.sh('cp cut.bin cut-copy.bin', mnt);
    expect(await untilNoOpenFiles()).toBe(0);
    expect(fs.readFileSync(path.join(mnt, 'cut.bin'))).toEqual(Buffer.concat([Buffer.alloc(4096, 'a'), Buffer.alloc(4096), Buffer.alloc(4096, 'b')]));
    const hashOf = async (f: string) => (await d.json<{ path?: string; entry?: { hash: string } }[]>(['log', 'w'])).filter((e) => e.path === f).at(-1)?.entry?.hash;
    const original = await hashOf('cut.bin');
    expect(original).toBeDefined();
    expect(original).toBe(await hashOf('cut-copy.bin'));
  });

  it('tar -x keeps the archive\'s mtimes (it sets only the mtime, by futimens), also once put and remounted; touch -d, touch -m, touch -a, cp -p', async () => {
    const src = path.join(d.root, 'mtime-src');
    const day = 86_400;
    const files = Array.from({ length: 12 }, (_, i) => `d${i % 3}/f${i}.txt`);
    files.forEach((f, i) => writeFile(src, f, `file ${i}\n`));
    files.forEach((f, i) => fs.utimesSync(path.join(src, f), 981173106 + i * day, 981173106 + i * day));
    ['d0', 'd1', 'd2'].forEach((dir, i) => fs.utimesSync(path.join(src, dir), 950000000 + i * day, 950000000 + i * day));
    d.sh(`tar -cf ${d.root}/mtimes.tar -C ${src} d0 d1 d2`, d.root);
    const expected = d.sh('stat -c "%n %Y" d0 d1 d2 d*/f*.txt', src);

    d.sh(`mkdir mtimes && tar -xf ${d.root}/mtimes.tar -C mtimes`, mnt);
    d.sh([
      "echo x > touched && touch -d '2001-01-01 00:00:00 UTC' touched",
      "echo y > mtime-only && touch -m -d '2002-01-01 00:00:00 UTC' mtime-only",
      "echo z > atime-only && touch -d '2003-01-01 00:00:00 UTC' atime-only && touch -a atime-only",
      'cp -p touched copied',
    ].join(' && '), mnt);
    const expectedTouched = 'touched 978307200\nmtime-only 1009843200\natime-only 1041379200\ncopied 978307200\n';
    const look = () => {
      // tar -d exits 1 and names each file whose mtime (or anything else) differs.
      expect(d.sh(`tar -df ${d.root}/mtimes.tar -C mtimes 2>&1 || true`, mnt)).toBe('');
      expect(d.sh('cd mtimes && stat -c "%n %Y" d0 d1 d2 d*/f*.txt', mnt)).toBe(expected);
      expect(d.sh('stat -c "%n %Y" touched mtime-only atime-only copied', mnt)).toBe(expectedTouched);
    };
    look();
    // Once the daemon put the files (their handles released), and from a fresh kernel cache.
    expect(await untilNoOpenFiles()).toBe(0);
    await d.json(['unmount', 'w']);
    await d.json(['mount', 'w', mnt]);
    look();
  });
});
