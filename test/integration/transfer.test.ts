import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '../../src/cli/client.js';
import { TestDaemon, treeChecksum } from '../helpers/daemon.js';

/** The project both machines start from (the receiver's workspace is a copy of the sender's). */
function project(ws: string): void {
  fs.mkdirSync(path.join(ws, 'src/lib'), { recursive: true });
  fs.writeFileSync(path.join(ws, 'README.md'), '# demo\n');
  fs.writeFileSync(path.join(ws, 'src/main.js'), 'console.log("main");\n');
  fs.writeFileSync(path.join(ws, 'src/lib/util.js'), 'module.exports = 1;\n');
  fs.writeFileSync(path.join(ws, 'build.sh'), '#!/bin/sh\necho build\n', { mode: 0o755 });
  fs.symlinkSync('src/main.js', path.join(ws, 'main-link'));
}

describe('export → import on another state directory → mount: the same tree', () => {
  let a: TestDaemon;
  let b: TestDaemon;
  let bundles: string;

  beforeAll(async () => {
    a = TestDaemon.create(project);
    b = TestDaemon.create(project);
    await a.start();
    await b.start();
    bundles = path.join(a.root, 'bundles');
    fs.mkdirSync(bundles);
    await a.json(['mount', 'par', a.mnt('par')]);
    a.sh('echo "par was here" >> README.md && mkdir -p docs && echo doc > docs/guide.md', a.mnt('par'));
    await a.json(['commit', 'par', '-m', 'par work']);
    await a.json(['mount', 'kid', a.mnt('kid'), '--parent', 'par']);
    a.sh([
      'sed -i "s/main/MAIN/" src/main.js',
      'head -c 300000 /dev/urandom > data.bin',
      'printf "#!/bin/sh\\necho tool\\n" > tool.sh && chmod 750 tool.sh',
      'chmod 600 src/lib/util.js',
      'ln -s docs/guide.md guide-link && ln -s ../../README.md src/lib/readme-link',
      'rm build.sh',
      'mv src/lib src/library',
      'mkdir -m 700 private && echo secret > private/key',
      'for i in $(seq 1 50); do echo "file $i" > gen-$i.txt; done',
    ].join(' && '), a.mnt('kid'));
    await a.json(['commit', 'kid', '-m', 'kid work']);
    // A parent commit rebases the kid; then uncommitted work, which travels too.
    a.sh('echo "par again" > docs/more.md', a.mnt('par'));
    await a.json(['commit', 'par', '-m', 'par again']);
    a.sh('echo late >> gen-1.txt && echo uncommitted > late.txt', a.mnt('kid'));
  });

  afterAll(async () => {
    await a?.destroy();
    await b?.destroy();
  });

  it('a full bundle imports into the second daemon and mounts byte for byte equal, modes and symlinks included', async () => {
    const out = path.join(bundles, 'full.bundle');
    const ex = await a.json(['export', 'kid', '--out', out]);
    expect(ex.lineage).toEqual(['par', 'kid']);
    expect(fs.statSync(out).size).toBe(ex.bytes);
    const im = await b.json(['import', out]);
    expect(im.created).toEqual(['par', 'kid']);
    await b.json(['mount', 'kid', b.mnt('kid')]);
    await b.json(['mount', 'par', b.mnt('par')]);
    const want = treeChecksum(a.mnt('kid'));
    expect(treeChecksum(b.mnt('kid'))).toBe(want);
    expect(fs.readFileSync(path.join(b.mnt('kid'), 'docs/more.md'), 'utf8')).toBe('par again\n');
    expect(fs.readlinkSync(path.join(b.mnt('kid'), 'src/library/readme-link'))).toBe('../../README.md');
    expect(fs.statSync(path.join(b.mnt('kid'), 'tool.sh')).mode & 0o777).toBe(0o750);
    expect(treeChecksum(b.mnt('par'))).toBe(treeChecksum(a.mnt('par')));
    // The imported agent works like any other: its log replays to the same tree.
    const replayed = path.join(b.root, 'replayed');
    await b.json(['replay', 'kid', '--out', replayed]);
    expect(treeChecksum(replayed)).toBe(want);
  });

  it('with the receiver\'s `cowfs have`, an incremental bundle is much smaller and grafts onto the imported parent', async () => {
    a.sh('head -c 200000 /dev/urandom > more.bin && echo v2 > late.txt', a.mnt('kid'));
    const manifest = path.join(bundles, 'b.have');
    const have = await b.cli(['have']);
    expect(have.code).toBe(0);
    fs.writeFileSync(manifest, have.stdout);
    expect(have.stdout.split('\n').filter((l) => /^[0-9a-f]{16}:\d+/.test(l)).length).toBeGreaterThan(50);
    const full = await a.json(['export', 'kid', '--out', path.join(bundles, 'full2.bundle')]);
    const inc = await a.json(['export', 'kid', '--out', path.join(bundles, 'inc.bundle'), '--have', manifest]);
    expect(inc.included).toBe(2);
    expect(inc.bytes).toBeLessThan(full.bytes * 0.6);
    const im = await b.json(['import', path.join(bundles, 'inc.bundle'), '--as', 'kid2', '--parent', 'par']);
    expect(im.received).toBe(2);
    await b.json(['mount', 'kid2', b.mnt('kid2')]);
    expect(treeChecksum(b.mnt('kid2'))).toBe(treeChecksum(a.mnt('kid')));
  });

  it('a bundle with a flipped byte or cut short is refused with a clear error and imports nothing', async () => {
    const good = fs.readFileSync(path.join(bundles, 'full.bundle'));
    // openFiles is left out: the libfuse 3 adapter's own handles on files just read close when idle.
    const agents = async () => ((await b.json(['ls'])) as { openFiles?: number }[]).map(({ openFiles: _, ...a }) => a);
    const before = await agents();
    const lastSeq = (await b.json(['status'])).lastSeq;
    const flipped = Buffer.from(good);
    flipped[Math.floor(good.length * 0.7)] ^= 0x01;
    fs.writeFileSync(path.join(bundles, 'flipped.bundle'), flipped);
    fs.writeFileSync(path.join(bundles, 'cut.bundle'), good.subarray(0, Math.floor(good.length * 0.8)));
    for (const [name, msg] of [['flipped', /corrupt|does not match/], ['cut', /cut short/]] as const) {
      const r = await b.cli(['import', path.join(bundles, `${name}.bundle`), '--as', `x-${name}`]);
      expect(r.code, name).toBe(1);
      expect(r.stderr, name).toMatch(msg);
      expect(r.stderr, name).toMatch(/^cowfs: /);
    }
    const missing = await b.cli(['import', path.join(bundles, 'nope.bundle')]);
    expect(missing.stderr).toMatch(/cannot read the bundle .*nope\.bundle: ENOENT/);
    const notBundle = await b.cli(['import', path.join(a.workspace, 'README.md')]);
    expect(notBundle.stderr).toMatch(/is not a cowfs bundle/);
    const badOut = await a.cli(['export', 'kid', '--out', path.join(bundles, 'no/such/dir.bundle')]);
    expect(badOut.stderr).toMatch(/the directory .* does not exist/);
    const j = await b.cli(['import', path.join(bundles, 'cut.bundle'), '--json']);
    expect(JSON.parse(j.stdout).error.code).toBe('bad_request');
    expect(await agents()).toEqual(before);
    expect((await b.json(['status'])).lastSeq).toBe(lastSeq);
  });
});

describe('gc through real mounts', () => {
  let d: TestDaemon;
  let writer: ChildProcess | undefined;

  beforeAll(async () => {
    d = TestDaemon.create(project);
    await d.start();
  });

  afterAll(async () => {
    if (writer && writer.exitCode === null) writer.kill('SIGKILL');
    await d?.destroy();
  });

  const oldLine = (i: number) => `old file ${String(i).padStart(5, '0')} ${'x'.repeat(3000)}\n`;

  it('runs during a concurrent writer, loses nothing, and frees the bytes of removed agents', async () => {
    await d.json(['mount', 'old', d.mnt('old')]);
    d.sh('x=$(head -c 3000 /dev/zero | tr "\\0" x); for i in $(seq 1 400); do printf "old file %05d %s\\n" $i "$x" > o-$i.txt; done; '
      + 'for i in 1 2 3; do head -c 500000 /dev/urandom > big-$i.bin; done', d.mnt('old'));
    await d.json(['commit', 'old', '-m', 'old work']);
    const oldBytes = (await d.json(['ls'])).find((x: any) => x.name === 'old').bytes;
    expect(oldBytes).toBeGreaterThan(2_500_000);
    await d.json(['rm', 'old']);
    const dry = await d.json(['gc', '--dry-run', '--keep-removed', '0']);
    expect(dry.freedBytes).toBeGreaterThanOrEqual(oldBytes);
    expect((await d.json(['gc', '--dry-run', '--keep-removed', '0'])).freedBlobs).toBe(dry.freedBlobs);

    await d.json(['mount', 'w', d.mnt('w')]);
    const stop = path.join(d.root, 'stop-writer');
    // Every other file has exactly the bytes of one the removed agent had: dedup hits while gc sweeps.
    writer = spawn('bash', ['-c', 'x=$(head -c 3000 /dev/zero | tr "\\0" x); i=0; '
      + `while [ ! -e ${stop} ] || [ $i -lt 300 ]; do i=$((i+1)); `
      + 'if [ $((i % 2)) = 0 ]; then printf "old file %05d %s\\n" $i "$x" > w-$i.txt; else echo "writer $i" > w-$i.txt; fi; done'],
    { cwd: d.mnt('w'), stdio: 'ignore' });
    const exited = new Promise<number | null>((r) => writer!.once('exit', (code) => r(code)));
    const count = () => fs.readdirSync(d.mnt('w')).filter((n) => n.startsWith('w-')).length;
    while (count() < 20) await new Promise((r) => setTimeout(r, 50));
    const atStart = count();
    const gc = await d.json(['gc', '--keep-removed', '0']);
    const atEnd = count();
    fs.writeFileSync(stop, '');
    expect(await exited).toBe(0);
    expect(atEnd).toBeGreaterThan(atStart);
    expect(gc.droppedAgents).toEqual(['old']);
    // Its events stay in the log; their content is gone, and show says so.
    const oldPut = (await d.json(['log'])).find((e: any) => e.agent === 'old' && e.type === 'put');
    const shown = await d.cli(['show', String(oldPut.seq)]);
    expect(shown.code).toBe(1);
    expect(shown.stderr).toMatch(/content is gone \(the agent was removed and collected by cowfs gc\)/);
    expect(gc.freedBytes).toBeGreaterThanOrEqual(oldBytes - 200 * 3020);
    const n = count();
    for (let i = 1; i <= n; i++) {
      const want = i % 2 === 0 ? oldLine(i) : `writer ${i}\n`;
      expect(fs.readFileSync(path.join(d.mnt('w'), `w-${i}.txt`), 'utf8'), `w-${i}.txt`).toBe(want);
    }
    // After a restart (the tree comes from the store, not from memory) everything is still there.
    await d.stop();
    await d.start();
    for (let i = 1; i <= n; i++) {
      const want = i % 2 === 0 ? oldLine(i) : `writer ${i}\n`;
      expect(fs.readFileSync(path.join(d.mnt('w'), `w-${i}.txt`), 'utf8'), `w-${i}.txt`).toBe(want);
    }
    const human = await d.cli(['gc', '--keep-removed', '0']);
    expect(human.stdout).toMatch(/^freed \d+ of \d+ blobs/);
    // Progress reaches a client before the answer (the CLI shows it on a terminal).
    const client = await Client.connect({ stateDir: d.stateDir, socket: path.join(d.stateDir, 'daemon.sock') });
    try {
      const phases: string[] = [];
      await client.call('gc', { dryRun: true }, (p) => phases.push(p.phase));
      expect(phases).toContain('sweeping');
    } finally {
      client.close();
    }
  });

  it('killed with -9 in the middle of a gc, the daemon restarts with every live tree intact; the next gc finishes the job', async () => {
    await d.json(['mount', 'old2', d.mnt('old2')]);
    d.sh('for i in $(seq 1 3000); do echo "doomed $i" > o-$i.txt; done; head -c 2000000 /dev/urandom > big.bin', d.mnt('old2'));
    await d.json(['commit', 'old2', '-m', 'old2']);
    await d.json(['rm', 'old2']);
    const before = treeChecksum(d.mnt('w'));
    // Killed as the sweep starts: the removed agent's records are gone, its blobs not yet (or only some).
    const client = await Client.connect({ stateDir: d.stateDir, socket: path.join(d.stateDir, 'daemon.sock') });
    let killed: Promise<void> | undefined;
    const answer = client.call('gc', { keepRemovedHours: 0 }, (p) => {
      if (p.phase === 'sweeping') killed ??= d.kill9();
    });
    await expect(answer).rejects.toThrow(/closed the connection/);
    await killed;
    client.close();
    await d.start();
    expect(treeChecksum(d.mnt('w'))).toBe(before);
    const again = await d.json(['gc', '--keep-removed', '0']);
    expect(again.freedBlobs + again.strayFiles).toBeGreaterThan(0);
    const after = await d.json(['gc', '--dry-run', '--keep-removed', '0']);
    expect(after.freedBlobs).toBe(0);
    expect(after.strayFiles).toBe(0);
    expect(treeChecksum(d.mnt('w'))).toBe(before);
  });
});
