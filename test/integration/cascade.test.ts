import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '../../src/cli/client.js';
import { TestDaemon } from '../helpers/daemon.js';
import { holdFile, type HeldFile } from '../helpers/writer.js';

const lines = Array.from({ length: 60 }, (_, i) => `line ${i + 1}`);
lines[29] = 'const width = 10; const height = 20;';

/** The adapter under test (vitest.config.ts); the daemon's default is libfuse3. */
const FUSE = process.env.COWFS_TEST_FUSE ?? 'libfuse3';

/**
 * libfuse 2's high-level API cannot tell the kernel to forget what it cached:
 * after a rebase, attributes (st_size) may be stale for the adapter's 1 s
 * cache window (docs/ARCHITECTURE.md). The native adapter invalidates
 * instead: nothing to wait for.
 */
const cacheWindow = () => (FUSE === 'libfuse2' ? new Promise((r) => setTimeout(r, 1100)) : Promise.resolve());

/** Reads with `look` until `done` says so or 30 s pass (what the daemon does on its own comes late on a loaded machine); the last reading. */
async function poll(look: () => string, done: (seen: string) => boolean): Promise<string> {
  let seen = look();
  for (const end = Date.now() + 30_000; !done(seen) && Date.now() < end; seen = look()) await new Promise((r) => setTimeout(r, 50));
  return seen;
}

describe('cascade through real mounts: 3 levels, 10 children', () => {
  let d: TestDaemon;
  const read = (agent: string, p: string) => fs.readFileSync(path.join(d.mnt(agent), p), 'utf8');
  const sed = (agent: string, expr: string, file = 'app.txt') => d.sh(`sed -i '${expr}' ${file}`, d.mnt(agent));

  beforeAll(async () => {
    d = TestDaemon.create((ws) => fs.writeFileSync(path.join(ws, 'app.txt'), `${lines.join('\n')}\n`));
    await d.start();
    await d.json(['mount', 'root', d.mnt('root')]);
    for (let i = 0; i < 10; i++) await d.json(['mount', `kid${i}`, d.mnt(`kid${i}`), '--parent', 'root']);
    await d.json(['mount', 'grandkid', d.mnt('grandkid'), '--parent', 'kid0']);
  });

  afterAll(async () => {
    await d?.destroy();
  });

  it('parent edits line 10, child line 50: both changes in the child and the grandchild', async () => {
    sed('kid0', '50s/.*/kid0 was here/');
    await d.json(['commit', 'kid0', '-m', 'kid0 edits line 50']);
    await cacheWindow();
    expect(read('grandkid', 'app.txt')).toContain('kid0 was here');
    sed('root', '10s/.*/root was here/');
    const r = await d.json(['commit', 'root', '-m', 'root edits line 10']);
    await cacheWindow();
    expect(r.cascade.conflicted).toEqual([]);
    expect(r.cascade.rebased).toHaveLength(11);
    for (const agent of ['kid0', 'grandkid']) {
      expect(read(agent, 'app.txt')).toContain('root was here');
      expect(read(agent, 'app.txt')).toContain('kid0 was here');
    }
    expect(read('kid7', 'app.txt')).toBe(read('root', 'app.txt'));
  });

  it('the same line changed in different places: a conflict by default, merged with refinement on', async () => {
    sed('kid1', '30s/width = 10/width = 11/');
    sed('kid2', '30s/width = 10/width = 11/');
    sed('root', '30s/height = 20/height = 21/');
    const r = await d.json(['commit', 'root', '-m', 'height']);
    await cacheWindow();
    expect(r.cascade.conflicted.map((c: any) => c.agent).sort()).toEqual(['kid1', 'kid2']);
    expect(read('kid1', 'app.txt')).toMatch(/<<<<<<< kid1\nconst width = 11; const height = 20;\n\|\|\|\|\|\|\| root@\d+\nconst width = 10; const height = 20;\n=======\nconst width = 10; const height = 21;\n>>>>>>> root@\d+\n/);
    const conflicts = await d.json<any[]>(['conflicts', 'kid1']);
    expect(conflicts[0]).toMatchObject({ path: 'app.txt', kind: 'content' });
    expect(conflicts[0].versions.theirs).toContain('height = 21');
    // Opt in to character-level refinement, then a new change of the same shape merges.
    await d.json(['config', 'refine', 'on']);
    await d.json(['resolve', 'kid1', 'app.txt', '--theirs']);
    await d.json(['resolve', 'kid2', 'app.txt', '--theirs']);
    sed('kid1', '30s/width = 10/width = 12/');
    sed('root', '30s/height = 21/height = 22/');
    const r2 = await d.json(['commit', 'root', '-m', 'height again']);
    await cacheWindow();
    expect(r2.cascade.conflicted.map((c: any) => c.agent)).not.toContain('kid1');
    expect(read('kid1', 'app.txt')).toContain('const width = 12; const height = 22;');
    const log = await d.json<any[]>(['log', 'kid1']);
    const rebased = log.filter((e) => e.type === 'AGENT_REBASED').at(-1);
    expect(rebased.refined[0].path).toBe('app.txt');
    expect(rebased.refined[0].hunks[0].result).toContain('width = 12; const height = 22');
    await d.json(['config', 'refine', 'off']);
  });

  it('the same characters: markers in the child, grandchild untouched until resolved, then updated', async () => {
    sed('kid0', '20s/.*/kid0 line 20/');
    await d.json(['commit', 'kid0', '-m', 'kid0 line 20']);
    await cacheWindow();
    const gBefore = read('grandkid', 'app.txt');
    sed('root', '20s/.*/root line 20/');
    const r = await d.json(['commit', 'root', '-m', 'root line 20']);
    await cacheWindow();
    expect(r.cascade.conflicted.map((c: any) => c.agent)).toContain('kid0');
    expect(read('kid0', 'app.txt')).toContain('<<<<<<< kid0\nkid0 line 20\n');
    expect(read('grandkid', 'app.txt')).toBe(gBefore);
    const human = await d.cli(['conflicts', 'kid0']);
    // Not a terminal: the characters each side changed are marked as git's word diff does.
    expect(human.stdout).toContain('base   | line 20');
    expect(human.stdout).toContain('ours   | {+kid0 +}line 20');
    expect(human.stdout).toContain('theirs | {+root +}line 20');
    const listed = await d.json<any[]>(['conflicts', 'kid0']);
    expect(listed[0].hunks[0].chars.ours).toEqual([{ line: 0, against: 'base', removed: [], added: [[0, 5]] }]);
    // Fix the file by hand inside the mount and commit from there: the cascade resumes.
    d.sh("sed -i '/^<<<<<<< /,/^>>>>>>> /c\\both line 20' app.txt", d.mnt('kid0'));
    const c = await d.json(['commit', '-m', 'resolved'], { cwd: d.mnt('kid0') });
    await cacheWindow();
    expect(c.cascade.rebased).toContain('grandkid');
    expect(read('grandkid', 'app.txt')).toContain('both line 20');
    expect(read('grandkid', 'app.txt')).toContain('root was here');
    const types = (await d.json<any[]>(['log', 'kid0'])).map((e) => e.type);
    expect(types).toEqual(expect.arrayContaining(['WORKTREE_CHANGED', 'AGENT_REBASED', 'WORKTREE_CONFLICT_DETECTED', 'WORKTREE_CONFLICT_RESOLVED']));
  });

  it('a workspace edit on disk reaches the root agent that materialized the file, and its children', async () => {
    sed('root', '3s/.*/root line 3/');
    await d.json(['commit', 'root', '-m', 'root line 3']);
    await cacheWindow();
    // A human edits the real workspace file (a rename over it, as editors and git do).
    const real = path.join(d.workspace, 'app.txt');
    const onDisk = fs.readFileSync(real, 'utf8').replace('line 58\n', 'human line 58\n');
    fs.writeFileSync(`${real}.tmp`, onDisk);
    fs.renameSync(`${real}.tmp`, real);
    const root = await poll(() => d.sh('cat app.txt', d.mnt('root')), (s) => s.includes('human line 58'));
    expect(root).toContain('human line 58');
    expect(root).toContain('root line 3');
    await cacheWindow();
    expect(read('kid7', 'app.txt')).toContain('human line 58');
    expect(read('kid0', 'app.txt')).toContain('human line 58');
    expect(read('kid0', 'app.txt')).toContain('both line 20');
    const log = await d.json<any[]>(['log', 'root']);
    expect(log.some((e) => e.type === 'AGENT_REBASED' && e.base === null && e.merged.includes('app.txt'))).toBe(true);
  });

  it('finds which parent commit caused a conflict, and replays the tree at that event', async () => {
    const log = await d.json<any[]>(['log', 'kid0']);
    const detected = log.filter((e) => e.type === 'WORKTREE_CONFLICT_DETECTED').at(-1);
    expect(detected.conflicts[0].to).toBeGreaterThan(0);
    const shown = await d.json(['show', String(detected.seq - 1)]);
    expect(shown.event.type).toBe('AGENT_REBASED');
    expect(shown.diff).toContain('+<<<<<<< kid0');
    // The commit that caused it, with the characters it changed inside its lines.
    const cause = await d.json(['show', String(log.find((e) => e.type === 'AGENT_COMMIT_CREATED' && e.message === 'root line 20').seq)]);
    const diffLines: string[] = cause.diff.split('\n');
    expect(cause.highlights.map((h: any) => [diffLines[h.line], h.ranges])).toEqual([['-line 20', []], ['+root line 20', [[1, 6]]]]);
    const human = (await d.cli(['show', String(cause.event.seq)])).stdout;
    expect(human).toContain('AGENT_COMMIT_CREATED');
    expect(human).toContain('\n-line 20\n+{+root +}line 20\n');
    const out = path.join(d.root, 'replayed');
    await d.json(['replay', 'kid0', '--to', String(detected.seq), '--out', out]);
    expect(fs.readFileSync(path.join(out, 'app.txt'), 'utf8')).toContain('<<<<<<< kid0');
  });
});

describe('what an agent sees changes at once through a warm kernel cache', () => {
  let d: TestDaemon;
  const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));
  let holder: ReturnType<typeof spawn> | undefined;
  /** Until the daemon heard that every file opened in the child was closed (libfuse 3: its handles idle and swept). */
  const childClosedAll = async () => expect(await d.untilNoOpenFiles('c')).toBe(0);

  beforeAll(async () => {
    d = TestDaemon.create((ws) => {
      fs.writeFileSync(path.join(ws, 'notes.txt'), 'one\n');
      fs.writeFileSync(path.join(ws, 'held.txt'), 'short\n');
      fs.writeFileSync(path.join(ws, 'untouched.txt'), 'on disk\n');
      fs.mkdirSync(path.join(ws, 'dir'));
      fs.writeFileSync(path.join(ws, 'dir/a.txt'), 'a\n');
    });
    await d.start();
    await d.json(['mount', 'p', d.mnt('p')]);
    await d.json(['mount', 'c', d.mnt('c'), '--parent', 'p']);
  });

  afterAll(async () => {
    if (holder?.pid && holder.exitCode === null) holder.kill('SIGKILL');
    await d?.destroy();
  });

  /** What a user looks at in the child: content, listing, sizes, a name that did not exist. */
  const look = () => d.sh([
    'cat notes.txt held.txt', 'ls dir', 'stat -c "%n %s" notes.txt held.txt',
    'cat dir/new.txt 2>/dev/null || echo no-new',
  ].join('; '), d.mnt('c'));

  it('a cascade rebase: content, ls, stat and a new name, with no wait', async () => {
    const c = d.mnt('c');
    // Warm every cache, twice, and keep held.txt open in another process (its inode stays in use).
    expect(look()).toBe(look());
    holder = spawn('sh', ['-c', 'exec 3< held.txt; exec sleep 60'], { cwd: c, stdio: 'ignore' });
    const held = holder;
    try {
      // Open before the rebase comes (the shell starts late on a loaded machine).
      const holds = () => {
        try {
          return fs.readlinkSync(`/proc/${held.pid}/fd/3`) === path.join(c, 'held.txt');
        } catch {
          return false;
        }
      };
      for (const end = Date.now() + 30_000; !holds() && Date.now() < end;) await wait(20);
      expect(holds()).toBe(true);
      d.sh([
        "printf 'one\\ntwo, longer\\n' > notes.txt", "printf 'longer than before\\n' > held.txt",
        'echo new > dir/new.txt', 'rm dir/a.txt',
      ].join(' && '), d.mnt('p'));
      const r = await d.json(['commit', 'p', '-m', 'p changes']);
      expect(r.cascade.rebased).toContain('c');
      await cacheWindow();
      expect(look()).toBe([
        'one', 'two, longer', 'longer than before', 'new.txt',
        'notes.txt 16', 'held.txt 19', 'new', '',
      ].join('\n'));
    } finally {
      // Closed before the next tests, which wait until the child has no file open.
      if (held.exitCode === null) held.kill('SIGKILL');
    }
  });

  it('a resolve: the chosen side shows at once where the markers were', async () => {
    const c = d.mnt('c');
    d.sh("sed -i 's/^one$/child one/' notes.txt", c);
    d.sh("sed -i 's/^one$/parent one/' notes.txt", d.mnt('p'));
    const r = await d.json(['commit', 'p', '-m', 'p line 1']);
    expect(r.cascade.conflicted.map((x: any) => x.agent)).toEqual(['c']);
    await cacheWindow();
    const marked = d.sh('cat notes.txt; stat -c %s notes.txt', c);
    expect(marked).toContain('<<<<<<< c\nchild one\n');
    await d.json(['resolve', 'c', 'notes.txt', '--theirs']);
    await cacheWindow();
    expect(d.sh('cat notes.txt; stat -c %s notes.txt', c)).toBe('parent one\ntwo, longer\n23\n');
  });

  it('inside the mount, resolve takes the path alone: the agent is the mount\'s', async () => {
    const [c, p] = [d.mnt('c'), d.mnt('p')];
    d.sh('echo base > inside.txt', p);
    await d.json(['commit', 'p', '-m', 'inside: base']);
    d.sh('echo child > inside.txt', c);
    d.sh('echo parent > inside.txt', p);
    const r = await d.json(['commit', 'p', '-m', 'inside: parent']);
    expect(r.cascade.conflicted.map((x: any) => x.agent)).toEqual(['c']);
    const resolved = await d.cli(['resolve', 'inside.txt', '--ours'], { cwd: c });
    expect(resolved.stderr).toBe('');
    expect(resolved.stdout).toMatch(/^resolved inside.txt in c\b/);
    expect(d.sh('cat inside.txt', c)).toBe('child\n');
    expect((await d.cli(['resolve', '--ours'], { cwd: c })).stderr).toMatch(/^cowfs: no PATH given/);
  });

  it('an undo: the file as it was, at once', async () => {
    const c = d.mnt('c');
    const before = d.sh('cat notes.txt; stat -c %s notes.txt; ls', c);
    const seq = (await d.json(['status'])).lastSeq;
    d.sh("printf 'a much longer edit of the notes\\n' > notes.txt && echo x > extra.txt", c);
    // Warm: what the edit left is in the kernel's caches now.
    expect(d.sh('cat notes.txt; ls', c)).toContain('a much longer edit');
    await d.json(['undo', 'c', '--to', String(seq)]);
    await cacheWindow();
    expect(d.sh('cat notes.txt; stat -c %s notes.txt; ls', c)).toBe(before);
  });

  it('a parent commit merges into a file the child wrote and closed a moment ago (its close unheard of yet)', async () => {
    const c = d.mnt('c');
    const ten = Array.from({ length: 10 }, (_, i) => `row ${i + 1}`);
    d.sh(`printf '${ten.join('\\n')}\\n' > rows.txt`, d.mnt('p'));
    await d.json(['commit', 'p', '-m', 'rows']);
    await cacheWindow();
    expect(d.sh('cat rows.txt', c)).toBe(`${ten.join('\n')}\n`); // warm
    d.sh("sed -i 's/^row 2$/parent 2/' rows.txt", d.mnt('p'));
    const client = await Client.connect({ stateDir: d.stateDir, socket: path.join(d.stateDir, 'daemon.sock') });
    try {
      // Rewritten in place (no rename: the same node), closed, and the commit asked for at once: with
      // libfuse 3 the adapter still holds the child's handle (idle 500 ms) when the rebase comes.
      d.sh("sed 's/^row 9$/child 9/' rows.txt > /tmp/rows.$$ && cat /tmp/rows.$$ > rows.txt && rm /tmp/rows.$$", c);
      const r = await client.call<{ cascade: { rebased: string[] } }>('commit', { agent: 'p', message: 'parent row 2' });
      expect(r.cascade.rebased).toContain('c');
    } finally {
      client.close();
    }
    await cacheWindow();
    const merged = ten.map((l) => (l === 'row 2' ? 'parent 2' : l === 'row 9' ? 'child 9' : l)).join('\n');
    expect(d.sh('cat rows.txt', c)).toBe(`${merged}\n`);
    // And it stays merged once the child's handle is released (no late put of the pre-merge content).
    await childClosedAll();
    await cacheWindow();
    expect(d.sh('cat rows.txt', c)).toBe(`${merged}\n`);
    expect((await d.cli(['diff', 'c', '--', 'rows.txt'])).stdout).toContain('+child 9');
    expect((await d.cli(['diff', 'c', '--', 'rows.txt'])).stdout).not.toContain('parent 2');
  });

  it('writers holding a file across a rebase of it, then renamed or replaced by another process: no error, the writes follow the file', async () => {
    const c = d.mnt('c');
    d.sh("printf 'top\\nmiddle\\n' > journal.txt; printf 'top\\n' > saved.txt", d.mnt('p'));
    await d.json(['commit', 'p', '-m', 'journal']);
    await cacheWindow();
    const journal = holdFile(c, 'journal.txt', 'a');
    const saved = holdFile(c, 'saved.txt', 'a');
    try {
      await journal.write('child 1\n');
      await saved.write('child 1\n');
      d.sh("sed -i 's/^top$/parent top/' journal.txt saved.txt", d.mnt('p'));
      await d.json(['commit', 'p', '-m', 'top']);
      await cacheWindow();
      d.sh('mv journal.txt journal-moved.txt; echo editor > tmp && mv tmp saved.txt', c);
      await journal.write('child 2\n');
      await saved.write('LOST\n');
      await wait(800); // past the idle window
      await journal.write('child 3\n');
      await saved.write('LOST\n');
      for (const w of [journal, saved]) expect(await w.close()).toEqual({ code: 0, stderr: '' });
    } finally {
      for (const w of [journal, saved]) w.kill();
    }
    // libfuse 3: the writer's close is heard as its handle's idleness (500 ms, swept every 500 ms).
    await childClosedAll();
    await cacheWindow();
    expect(d.sh('ls', c)).not.toMatch(/^journal.txt$/m);
    // Where the later writes go in the merged content depends on the adapter (libfuse 2: the writer's
    // content wins at its close; libfuse 3: the kernel writes at the offsets its own cache knows).
    expect(d.sh('cat journal-moved.txt', c)).toMatch(/child 2\n(.*\n)*child 3\n$/);
    expect(d.sh('cat saved.txt', c)).toBe('editor\n');
  });

  it('an O_APPEND writer holding a file across a rebase that shortens or lengthens it: its lines follow the new end', async () => {
    // Without the writeback cache the kernel appends at the size it believed before the rebase: past a
    // shorter new content that left NULs before the line, inside a longer one it overwrote its end.
    if (FUSE === 'libfuse2') return; // there O_APPEND reaches the tree at the open
    // Agents of their own: what earlier tests left open may pause c's rebases.
    await d.json(['mount', 'pa', d.mnt('pa')]);
    await d.json(['mount', 'ca', d.mnt('ca'), '--parent', 'pa']);
    const c = d.mnt('ca');
    d.sh("printf 'an old line that is long\\n' > shrinks.txt; printf 'short\\n' > grows.txt", d.mnt('pa'));
    await d.json(['commit', 'pa', '-m', 'logs']);
    expect(d.sh('cat shrinks.txt grows.txt', c)).toBe('an old line that is long\nshort\n');
    const shrinks = holdFile(c, 'shrinks.txt', 'a');
    const grows = holdFile(c, 'grows.txt', 'a');
    try {
      await Promise.all([shrinks.opened, grows.opened]);
      d.sh("printf 'new\\n' > shrinks.txt; printf 'a much longer line from the parent\\n' > grows.txt", d.mnt('pa'));
      const r = await d.json<{ cascade: { rebased: string[] } }>(['commit', 'pa', '-m', 'rewritten']);
      expect(r.cascade.rebased).toContain('ca');
      await shrinks.write('late\n');
      await grows.write('late\n');
      await shrinks.write('later\n');
      for (const w of [shrinks, grows]) expect(await w.close()).toEqual({ code: 0, stderr: '' });
    } finally {
      for (const w of [shrinks, grows]) w.kill();
    }
    expect(d.sh('cat shrinks.txt', c)).toBe('new\nlate\nlater\n');
    expect(d.sh('cat grows.txt', c)).toBe('a much longer line from the parent\nlate\n');
    expect(await d.untilNoOpenFiles('ca')).toBe(0);
    expect(d.sh('cat shrinks.txt grows.txt', c)).toBe('new\nlate\nlater\na much longer line from the parent\nlate\n');
  });

  // The rebase gives the path a new node; the holder keeps the one it retired. Each kernel inode placed its
  // writer's lines at its own size: the holder's next line landed over the other's. libfuse 2: O_APPEND
  // reaches the tree at the open, and each writer's whole file wins at its close.
  it.skipIf(FUSE === 'libfuse2')('an O_APPEND writer holding a file across a rebase that shortens it, and a process that opened it after: their lines alternate, each once', async () => {
    await d.json(['mount', 'pb', d.mnt('pb')]);
    await d.json(['mount', 'cb', d.mnt('cb'), '--parent', 'pb']);
    const c = d.mnt('cb');
    d.sh("printf 'an old line that is long\\n' > log.txt", d.mnt('pb'));
    await d.json(['commit', 'pb', '-m', 'log']);
    const held = holdFile(c, 'log.txt', 'a');
    let opener: HeldFile | undefined;
    const lines = ['new'];
    try {
      await held.opened;
      d.sh("printf 'new\\n' > log.txt", d.mnt('pb'));
      const r = await d.json<{ cascade: { rebased: string[] } }>(['commit', 'pb', '-m', 'shorter']);
      expect(r.cascade.rebased).toContain('cb');
      opener = holdFile(c, 'log.txt', 'a');
      await opener.opened;
      for (let i = 1; i <= 3; i++) {
        for (const [w, name] of [[held, 'held'], [opener, 'opener']] as const) {
          await w.write(`${name} ${i}\n`);
          lines.push(`${name} ${i}`);
        }
      }
      for (const w of [held, opener]) expect(await w.close()).toEqual({ code: 0, stderr: '' });
    } finally {
      held.kill();
      opener?.kill();
    }
    expect(await d.untilNoOpenFiles('cb')).toBe(0);
    expect(d.sh('cat log.txt', c)).toBe(`${lines.join('\n')}\n`);
  });

  it('names a rebase brings into directories the child made (whose missing names are answered in C) show at once', async () => {
    // Agents of their own: what earlier tests left open may pause c's rebases (libfuse 2 hears closes late).
    await d.json(['mount', 'p2', d.mnt('p2')]);
    await d.json(['mount', 'c2', d.mnt('c2'), '--parent', 'p2']);
    const c = d.mnt('c2');
    d.sh('mkdir made && echo mine > made/own.txt', c);
    // Missing now: the kernel and the adapter remember it (a process looking again gets ENOENT at once).
    const look = () => d.sh('cat made/x.txt 2>/dev/null || echo no-x; cat made/sub/y.txt 2>/dev/null || echo no-y; ls made', c);
    expect(look()).toBe('no-x\nno-y\nown.txt\n');
    expect(look()).toBe('no-x\nno-y\nown.txt\n');
    // A process inside made/ since before the rebase (the kernel's node of made/ as it was) looks again after it.
    const go = path.join(d.root, 'rebased');
    const inside = spawn('bash', ['-c', `cd made && (cat x.txt 2>/dev/null || echo no-x) && while [ ! -e ${go} ]; do sleep 0.05; done; cat x.txt sub/y.txt`],
      { cwd: c, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    inside.stdout!.setEncoding('utf8').on('data', (s: string) => { out += s; });
    const exited = new Promise<void>((r) => inside.once('exit', () => r()));
    try {
      for (const end = Date.now() + 20_000; !out.includes('no-x') && Date.now() < end;) await wait(50);
      d.sh('mkdir -p made/sub && echo from-parent > made/x.txt && echo deeper > made/sub/y.txt', d.mnt('p2'));
      const r = await d.json(['commit', 'p2', '-m', 'p2 makes made/']);
      expect(r.cascade.rebased).toContain('c2');
      await cacheWindow();
      expect(look()).toBe('from-parent\ndeeper\nown.txt\nsub\nx.txt\n');
      fs.writeFileSync(go, '');
      await exited;
      expect(out).toBe('no-x\nfrom-parent\ndeeper\n');
    } finally {
      inside.kill('SIGKILL');
    }
  });

  it('a file on disk the agent never touched: the change shows without a remount', async () => {
    const p = d.mnt('p');
    expect(d.sh('cat untouched.txt', p)).toBe('on disk\n');
    fs.writeFileSync(path.join(d.workspace, 'untouched.txt'), 'changed on disk, longer\n');
    // The change reaches the daemon through inotify: poll, as an editor's user would see it. The
    // kernel is told of the file's new content and of its name in two notifications, written by the
    // addon's thread while this reads: a reader in between may meet one and not yet the other (seen
    // once under load: the new bytes cut at the old size). What must come is the whole new file.
    const whole = 'changed on disk, longer\n24\n';
    let seen = await poll(() => d.sh('cat untouched.txt; stat -c %s untouched.txt', p), (s) => s === whole);
    expect(seen).toBe(whole);
    // A directory made on disk after the mount is watched too.
    expect(d.sh('ls', p)).not.toContain('made-later');
    fs.mkdirSync(path.join(d.workspace, 'made-later'));
    fs.writeFileSync(path.join(d.workspace, 'made-later/f.txt'), 'v1\n');
    seen = await poll(() => d.sh('cat made-later/f.txt 2>/dev/null || true', p), (s) => s.startsWith('v1'));
    expect(seen).toBe('v1\n');
    // At once: a change made before the daemon watched the new directory shows too.
    fs.writeFileSync(path.join(d.workspace, 'made-later/f.txt'), 'v2, longer\n');
    seen = await poll(() => d.sh('cat made-later/f.txt; stat -c %s made-later/f.txt', p), (s) => s === 'v2, longer\n11\n');
    expect(seen).toBe('v2, longer\n11\n');
  });
});

describe('cascade through real mounts: additions, modes, symlinks, deletions, binary files', () => {
  let d: TestDaemon;
  const sh = (agent: string, script: string) => d.sh(script, d.mnt(agent));

  beforeAll(async () => {
    d = TestDaemon.create((ws) => {
      fs.writeFileSync(path.join(ws, 'app.txt'), `${lines.join('\n')}\n`);
      fs.writeFileSync(path.join(ws, 'run.sh'), 'echo run\n');
      fs.writeFileSync(path.join(ws, 'tool.sh'), 'echo tool\n');
      fs.writeFileSync(path.join(ws, 'gone.txt'), 'a\nb\nc\n');
      fs.writeFileSync(path.join(ws, 'logo.bin'), Buffer.from([0x89, 0, 1, 2]));
      fs.symlinkSync('v1', path.join(ws, 'current'));
      fs.symlinkSync('v1', path.join(ws, 'fought'));
    });
    await d.start();
    await d.json(['mount', 'root', d.mnt('root')]);
    await d.json(['mount', 'kid', d.mnt('kid'), '--parent', 'root']);
    await d.json(['mount', 'grandkid', d.mnt('grandkid'), '--parent', 'kid']);
  });

  afterAll(async () => {
    await d?.destroy();
  });

  it('merges what merges, conflicts on the rest with the three versions, and resumes when resolved', async () => {
    sh('kid', [
      'chmod 755 app.txt', // mode here, content above
      "printf 'echo run by kid\\n' > run.sh", // content here, mode above
      'chmod 700 tool.sh', // mode on both sides, differently
      'ln -sfn kid-target fought', // retargeted on both sides
      "printf 'kid\\nshared\\n' > added.txt", // added on both sides
      "printf 'b\\nc\\nkid\\n' > gone.txt", // modified here, deleted above
      "printf '\\211\\000kid' > logo.bin", // binary on both sides
      'mkdir made && echo kid > made/inner', // a directory here, a file above
    ].join(' && '));
    sh('root', [
      "sed -i '10s/.*/root line 10/' app.txt",
      'chmod 755 run.sh tool.sh',
      'ln -sfn v2 current',
      'ln -sfn root-target fought',
      "printf 'root\\nshared\\n' > added.txt",
      'rm gone.txt',
      "printf '\\211\\000root' > logo.bin",
      'echo root > made',
    ].join(' && '));
    await d.json(['commit', 'kid', '-m', 'kid']);
    const r = await d.json(['commit', 'root', '-m', 'root']);
    await cacheWindow();
    expect(r.cascade.conflicted).toEqual([{ agent: 'kid', paths: expect.any(Array) }]);
    expect(r.cascade.conflicted[0].paths.sort()).toEqual(['added.txt', 'fought', 'gone.txt', 'logo.bin', 'made', 'tool.sh']);

    // Merged: each side's change, content and mode alike.
    expect(sh('kid', 'stat -c %a app.txt run.sh tool.sh')).toBe('755\n755\n700\n');
    expect(sh('kid', 'grep -c "root line 10" app.txt')).toBe('1\n');
    expect(sh('kid', 'cat run.sh')).toBe('echo run by kid\n');
    expect(sh('kid', 'readlink current fought')).toBe('v2\nkid-target\n');
    expect(sh('kid', 'cat added.txt')).toMatch(/^<<<<<<< kid\nkid\nshared\n\|\|\|\|\|\|\| root@\d+\n=======\nroot\nshared\n>>>>>>> root@\d+\n$/);
    expect(sh('kid', 'cat gone.txt')).toBe('b\nc\nkid\n');
    expect(sh('kid', 'od -An -c logo.bin').replace(/\s+/g, ' ').trim()).toBe('211 \\0 k i d');

    const listed = await d.json<any[]>(['conflicts', 'kid']);
    const byPath = Object.fromEntries(listed.map((c) => [c.path, c]));
    expect(byPath['tool.sh']).toMatchObject({ kind: 'mode', modes: { base: 0o644, ours: 0o700, theirs: 0o755 } });
    expect(byPath['fought']).toMatchObject({ kind: 'symlink', targets: { base: 'v1', ours: 'kid-target', theirs: 'root-target' } });
    expect(byPath['gone.txt']).toMatchObject({ kind: 'delete-modify', theirs: null, versions: { base: 'a\nb\nc\n', ours: 'b\nc\nkid\n' } });
    expect(byPath['logo.bin']).toMatchObject({ kind: 'binary', versions: null });
    expect(byPath['added.txt']).toMatchObject({ kind: 'content', base: null, versions: { ours: 'kid\nshared\n', theirs: 'root\nshared\n' } });
    const human = (await d.cli(['conflicts', 'kid'])).stdout;
    expect(human).toContain('fought: symlink conflict');
    expect(human).toContain('ours (kept): symlink -> kid-target; theirs: symlink -> root-target');
    expect(human).toContain('permissions changed on both sides: base 644, ours 700 (kept), theirs 755');
    expect(human).toContain('modified here, deleted by the parent');
    expect(human).toContain('made: type conflict');
    expect(human).toContain('base: absent; ours (kept): a directory; theirs: a file');

    // The grandchild waits for every conflict of its parent.
    expect(sh('grandkid', 'readlink current; cat added.txt')).toBe('v1\nkid\nshared\n');
    expect(sh('kid', 'cat made/inner')).toBe('kid\n');
    for (const p of ['tool.sh', 'fought', 'gone.txt', 'logo.bin', 'made']) await d.json(['resolve', 'kid', p, '--theirs']);
    const last = await d.json(['resolve', 'kid', 'added.txt', '--ours']);
    expect(last.rebased).toEqual(['grandkid']);
    await cacheWindow();
    expect(sh('kid', 'stat -c %a tool.sh; readlink fought; ls gone.txt 2>&1 || true')).toMatch(/^755\nroot-target\n.*No such file/);
    expect(sh('grandkid', 'stat -c %a app.txt run.sh tool.sh; readlink current fought; cat run.sh')).toBe('755\n755\n755\nv2\nroot-target\necho run by kid\n');
    expect(sh('grandkid', 'cat added.txt; od -An -c logo.bin')).toMatch(/^kid\nshared\n\s+211\s+\\0\s+r\s+o\s+o\s+t\s*$/);
    expect(sh('grandkid', 'ls')).not.toContain('gone.txt');
    expect(sh('grandkid', 'cat made')).toBe('root\n');
  });
});

describe('files a process in the child holds open while a parent commit deletes or changes them', () => {
  let d: TestDaemon;
  const held: HeldFile[] = [];
  const OLD = 'the content the holder opened\n';
  const NEW = 'what the parent committed, longer than before\n';
  /** Inherited from the workspace (ws-) or from the parent's commit (p-), held unread or read in part. */
  const files = ['ws', 'p'].flatMap((from) => ['gone', 'edited'].flatMap((fate) => ['unread', 'part'].map((how) => `${from}-${fate}-${how}.txt`)));

  beforeAll(async () => {
    d = TestDaemon.create((ws) => {
      for (const f of files.filter((f) => f.startsWith('ws-'))) fs.writeFileSync(path.join(ws, f), OLD);
    });
    await d.start();
    await d.json(['mount', 'p', d.mnt('p')]);
    await d.json(['mount', 'c', d.mnt('c'), '--parent', 'p']);
    for (const f of files.filter((f) => f.startsWith('p-'))) fs.writeFileSync(path.join(d.mnt('p'), f), OLD);
    await d.json(['commit', 'p', '-m', 'p- files']);
  });

  afterAll(async () => {
    for (const h of held) h.kill();
    await d?.destroy();
  });

  it('the holder reads what it opened to the end; a new open sees the change; the child\'s own writes stay', async () => {
    const c = d.mnt('c');
    d.sh("printf 'mine\\n' > own.txt", c);
    await d.json(['commit', 'c', '-m', 'own']);
    d.sh("printf 'mine, not committed\\n' > draft.txt", c);
    await cacheWindow();
    // Warm: every name, attribute and page in the kernel.
    expect(d.sh(`cat ${files.join(' ')}`, c)).toBe(OLD.repeat(files.length));
    const holders = new Map(files.map((f) => [f, holdFile(c, f, 'r')]));
    held.push(...holders.values());
    for (const [f, h] of holders) {
      await h.opened;
      if (f.endsWith('-part.txt')) expect(await h.read(4)).toBe(OLD.slice(0, 4));
    }
    const p = d.mnt('p');
    d.sh(`rm ${files.filter((f) => f.includes('-gone-')).join(' ')}`, p);
    for (const f of files.filter((f) => f.includes('-edited-'))) fs.writeFileSync(path.join(p, f), NEW);
    const r = await d.json(['commit', 'p', '-m', 'delete and change what c holds']);
    expect(r.cascade.rebased).toEqual(['c']);
    await cacheWindow();

    const read = Object.fromEntries(await Promise.all([...holders].map(async ([f, h]) => [f, await h.read(1000)] as const)));
    expect(read).toEqual(Object.fromEntries(files.map((f) => [f, f.endsWith('-part.txt') ? OLD.slice(4) : OLD])));
    // A new open: the parent's change.
    const now = (f: string) => d.sh(`cat ${f} 2>/dev/null || echo gone`, c);
    for (const f of files) expect([f, now(f)]).toEqual([f, f.includes('-gone-') ? 'gone\n' : NEW]);
    for (const h of holders.values()) expect(await h.close()).toEqual({ code: 0, stderr: '' });

    // Nothing of the holders reached the child's tree, now or once their handles are let go; its own writes stay.
    await new Promise((res) => setTimeout(res, 1500));
    for (const f of files) expect([f, now(f)]).toEqual([f, f.includes('-gone-') ? 'gone\n' : NEW]);
    expect(d.sh('cat own.txt draft.txt', c)).toBe('mine\nmine, not committed\n');
    expect((await d.cli(['diff', 'c', '--name-only'])).stdout.split('\n').filter(Boolean).sort()).toEqual(['draft.txt', 'own.txt']);
    // What was kept for the holders goes once the kernel lets the files go (at once here; a kernel
    // keeping the inodes cached lets them go when they are evicted).
    const untilNone = () => d.untilNoOpenFiles('c');
    if ((await untilNone()) > 0 && process.getuid?.() === 0) d.sh('sync; echo 2 > /proc/sys/vm/drop_caches', d.workspace);
    expect(await untilNone()).toBe(0);
  });
});

describe('a parent deletes or renames a directory the child wrote into', () => {
  let d: TestDaemon;
  const sh = (agent: string, script: string) => d.sh(script, d.mnt(agent));

  beforeAll(async () => {
    d = TestDaemon.create((ws) => {
      for (const dir of ['lib', 'old']) {
        fs.mkdirSync(path.join(ws, dir, 'deep'), { recursive: true });
        fs.writeFileSync(path.join(ws, dir, 'a.txt'), 'a\n');
        fs.writeFileSync(path.join(ws, dir, 'deep', 'b.txt'), 'b\n');
      }
    });
    await d.start();
    await d.json(['mount', 'p', d.mnt('p')]);
    await d.json(['mount', 'c', d.mnt('c'), '--parent', 'p']);
  });

  afterAll(async () => {
    await d?.destroy();
  });

  it("the child's files stay reachable there, as git keeps a directory while a file is in it", async () => {
    sh('c', "printf 'new\\n' > lib/deep/new.txt && printf 'a\\nkid\\n' > old/a.txt");
    sh('p', 'rm -r lib && mv old renamed');
    const r = await d.json(['commit', 'p', '-m', 'remove lib, rename old']);
    await cacheWindow();
    // The edit of a file the parent moved away is a delete/modify conflict that keeps ours; the new file merges.
    expect(r.cascade.conflicted).toEqual([{ agent: 'c', paths: ['old/a.txt'] }]);
    expect(sh('c', 'cat lib/deep/new.txt old/a.txt; ls -A lib lib/deep old; cat renamed/deep/b.txt')).toBe(
      'new\na\nkid\nlib:\ndeep\n\nlib/deep:\nnew.txt\n\nold:\na.txt\nb\n',
    );
    expect((await d.cli(['diff', 'c', '--name-only'])).stdout.split('\n').filter(Boolean).sort()).toEqual(['lib/deep/new.txt', 'old/a.txt']);
    // The parent brings lib back: its files show again beside the child's (a directory kept opaque
    // hid them, and landing the child would have deleted them).
    await d.json(['resolve', 'c', 'old/a.txt', '--ours']);
    sh('p', "mkdir -p lib/deep && printf 'back\\n' > lib/a.txt");
    await d.json(['commit', 'p', '-m', 'lib is back']);
    await cacheWindow();
    expect(await poll(() => sh('c', 'ls -A lib; cat lib/a.txt'), (s) => s.includes('back'))).toBe('a.txt\ndeep\nback\n');
    expect((await d.cli(['diff', 'c', '--name-only'])).stdout.split('\n').filter(Boolean).sort()).toEqual(['lib/deep/new.txt', 'old/a.txt']);
  });
});

describe('a child deleted a directory the parent later adds to (rm -rf d; mkdir d, and mv d/sub kept; rm -rf d)', () => {
  let d: TestDaemon;
  const sh = (agent: string, script: string) => d.sh(script, d.mnt(agent));
  const names = async (agent: string) => (await d.cli(['diff', agent, '--name-only'])).stdout.split('\n').filter(Boolean).sort();

  beforeAll(async () => {
    d = TestDaemon.create((ws) => {
      for (const dir of ['d/sub', 'e/sub']) fs.mkdirSync(path.join(ws, dir), { recursive: true });
      for (const f of ['d/x', 'd/sub/y', 'e/other', 'e/sub/f']) fs.writeFileSync(path.join(ws, f), `${f}\n`);
    });
    await d.start();
    await d.json(['mount', 'p', d.mnt('p')]);
    await d.json(['mount', 'c', d.mnt('c'), '--parent', 'p']);
  });

  afterAll(async () => {
    await d?.destroy();
  });

  it("the child shows what the parent added there since, and landing the child keeps it", async () => {
    sh('c', 'rm -rf d && mkdir -p d/sub && echo z > d/sub/z && mv e/sub kept && rm -rf e');
    await d.json(['commit', 'c', '-m', 'replace d, keep e/sub']);
    const before = await names('c');
    sh('p', 'echo new > d/new && echo new2 > e/new2 && echo f2 > e/sub/f');
    const r = await d.json(['commit', 'p', '-m', 'add to d and e']);
    await cacheWindow();
    expect(r.cascade.conflicted).toEqual([]);
    // The child deleted what it saw (d/x, d/sub/y, e/other), not what came since; its d/sub hides d/sub/y still.
    expect(sh('c', 'ls -A d d/sub e kept; cat d/new e/new2 kept/f')).toBe('d:\nnew\nsub\n\nd/sub:\nz\n\ne:\nnew2\n\nkept:\nf\nnew\nnew2\nf2\n');
    expect(await names('c')).toEqual(before);
    await d.json(['land', 'c']);
    await cacheWindow();
    expect(sh('p', 'ls -A d d/sub e kept; cat d/new e/new2 kept/f')).toBe('d:\nnew\nsub\n\nd/sub:\nz\n\ne:\nnew2\n\nkept:\nf\nnew\nnew2\nf2\n');
  });
});

describe('a directory removed on disk in the workspace that a root agent wrote into', () => {
  let d: TestDaemon;

  beforeAll(async () => {
    d = TestDaemon.create((ws) => {
      fs.mkdirSync(path.join(ws, 'gen', 'deep'), { recursive: true });
      fs.writeFileSync(path.join(ws, 'gen', 'old.txt'), 'old\n');
      fs.writeFileSync(path.join(ws, 'gen', 'deep', 'x.txt'), 'x\n');
    });
    await d.start();
    await d.json(['mount', 'r', d.mnt('r')]);
  });

  afterAll(async () => {
    await d?.destroy();
  });

  it("keeps the agent's files reachable (git checkout of a branch without the directory), and shows the directory's files again once it is back", async () => {
    const r = d.mnt('r');
    d.sh("printf 'mine\\n' > gen/deep/mine.txt && printf 'top\\n' > gen/top.txt", r);
    fs.rmSync(path.join(d.workspace, 'gen'), { recursive: true });
    // The removal reaches the agent through the workspace watchers: eventual, so polled.
    const look = () => {
      try {
        return d.sh('cat gen/deep/mine.txt gen/top.txt; ls -A gen gen/deep', r);
      } catch {
        return '';
      }
    };
    expect(await poll(look, (s) => s.includes('mine'))).toBe('mine\ntop\ngen:\ndeep\ntop.txt\n\ngen/deep:\nmine.txt\n');
    expect((await d.cli(['diff', 'r', '--name-only'])).stdout.split('\n').filter(Boolean).sort()).toEqual(['gen/deep/mine.txt', 'gen/top.txt']);
    // Back on disk: what the workspace holds there shows through again, beside the agent's files.
    fs.mkdirSync(path.join(d.workspace, 'gen', 'deep'), { recursive: true });
    fs.writeFileSync(path.join(d.workspace, 'gen', 'old.txt'), 'old\n');
    expect(await poll(() => d.sh('ls -A gen', r), (s) => s.includes('old.txt'))).toBe('deep\nold.txt\ntop.txt\n');
  });
});

describe('a root agent deleted a directory that files are later added to or edited in on disk', () => {
  let d: TestDaemon;

  beforeAll(async () => {
    d = TestDaemon.create((ws) => {
      for (const dir of ['d/sub', 'e']) fs.mkdirSync(path.join(ws, dir), { recursive: true });
      for (const f of ['d/x', 'd/edited', 'd/sub/y', 'e/old']) fs.writeFileSync(path.join(ws, f), `${f}\n`);
    });
    await d.start();
    await d.json(['mount', 'r', d.mnt('r')]);
  });

  afterAll(async () => {
    await d?.destroy();
  });

  it('shows what came on disk since, conflicts on what was edited there, and landing keeps what came (rm -rf d; rm -rf e; mkdir e)', async () => {
    const r = d.mnt('r');
    d.sh('rm -rf d e && mkdir e && echo mine > e/mine', r);
    await d.json(['commit', 'r', '-m', 'remove d, make e again']);
    await new Promise((res) => setTimeout(res, 50)); // the disk changes after the deletions, by the clock
    const at = (p: string) => path.join(d.workspace, p);
    fs.writeFileSync(at('d/new'), 'new\n');
    fs.appendFileSync(at('d/edited'), 'edited on disk\n');
    fs.writeFileSync(at('e/new'), 'e new\n');
    // The changes reach the agent through the workspace watchers: eventual, so polled.
    const look = () => {
      try {
        return d.sh('ls -A d e', r);
      } catch {
        return '';
      }
    };
    expect(await poll(look, (s) => s.includes('new\n\ne:') && s.endsWith('mine\nnew\n'))).toBe('d:\nedited\nnew\n\ne:\nmine\nnew\n');
    expect(d.sh('cat d/new d/edited e/new', r)).toBe('new\nd/edited\nedited on disk\ne new\n');
    const conflicts = await d.json<any[]>(['conflicts', 'r']);
    expect(conflicts.map((c) => [c.path, c.kind])).toEqual([['d/edited', 'delete-modify']]);
    await d.json(['resolve', 'r', 'd/edited', '--ours']);
    await d.json(['land', 'r']);
    // The agent deleted what it saw (d/x, d/edited, d/sub, e/old), not what came on disk since.
    expect(d.sh('ls -A d e', d.workspace)).toBe('d:\nnew\n\ne:\nmine\nnew\n');
  });
});

describe('a process in the child appends to a file while the parent commits changes to it', () => {
  let d: TestDaemon;

  beforeAll(async () => {
    d = TestDaemon.create((ws) => fs.writeFileSync(path.join(ws, 'f.txt'), 'aaaa\nbbbb\ncccc\n'));
    await d.start();
    await d.json(['mount', 'p', d.mnt('p')]);
    await d.json(['mount', 'c', d.mnt('c'), '--parent', 'p']);
  });

  afterAll(async () => {
    await d?.destroy();
  });

  // Three rounds: the second rebase under the same writer was lost (a reader kept on the old content
  // kept the written file standing for the path, and the writer's next writes went to it).
  const ROUNDS = 3;
  // libfuse 2: the writer's whole file wins at its close (docs/ARCHITECTURE.md): not this case.
  it.skipIf(FUSE === 'libfuse2')("every rebase merges the parent's line 1 into what the writer appends meanwhile; its release keeps the merge: each line once, no NUL", async () => {
    // The writer holds f.txt open across the rebases of it and appends all through each commit
    // (libfuse 3 without the cache: its writes go to the addon), a line of its own before. The parent's
    // line 1 keeps its length, so the kernel's offsets of the appends stay right whatever it cached.
    const c = d.mnt('c');
    const writer = holdFile(c, 'f.txt', 'a');
    const appended: string[] = [];
    const expected = (first: string) => `${[first, 'bbbb', 'cccc', ...appended].join('\n')}\n`;
    try {
      await writer.opened;
      for (let round = 1; round <= ROUNDS; round++) {
        await writer.write(`child ${round}\n`);
        appended.push(`child ${round}`);
        d.sh(`sed -i '1s/.*/AAA${round}/' f.txt`, d.mnt('p'));
        await writer.burst(`during ${round}`);
        const r = await d.json<{ cascade: { rebased: string[]; conflicted: unknown[] } }>(['commit', 'p', '-m', `line 1, round ${round}`]);
        const n = await writer.stop();
        appended.push(...Array.from({ length: n }, (_, i) => `during ${round} ${i + 1}`));
        expect(r.cascade).toMatchObject({ rebased: ['c'], conflicted: [] });
        expect(d.sh('cat f.txt', c)).toBe(expected(`AAA${round}`));
      }
      expect(await writer.close()).toEqual({ code: 0, stderr: '' });
    } finally {
      writer.kill();
    }
    // Once the child's handle is released (libfuse 3: idle, swept): the merge stays, stored so.
    expect(await d.untilNoOpenFiles('c')).toBe(0);
    expect(d.sh('cat f.txt', c)).toBe(expected(`AAA${ROUNDS}`));
    // The child's own change is its lines alone: the parent's line 1 is its base, not undone.
    expect((await d.cli(['diff', 'c', '--', 'f.txt'])).stdout).not.toMatch(/^[-+]AAA/m);
  });
});
