import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { O_CREAT, O_TRUNC, O_WRONLY } from '../../src/overlay/contract.js';
import { Overlay } from '../../src/overlay/overlay.js';
import { CLI, TestDaemon, treeChecksum } from '../helpers/daemon.js';

/** libfuse 2 cannot invalidate the kernel's attribute cache: changes made by the daemon show within 1 s (ARCHITECTURE.md). */
const cacheWindow = () => new Promise((r) => setTimeout(r, 1100));

const numbered = (n: number, tag = 'line') => `${Array.from({ length: n }, (_, i) => `${tag} ${i + 1}`).join('\n')}\n`;

function prepare(ws: string): void {
  const w = (p: string, s: string | Buffer) => {
    fs.mkdirSync(path.dirname(path.join(ws, p)), { recursive: true });
    fs.writeFileSync(path.join(ws, p), s);
  };
  w('src/app.txt', numbered(40));
  w('src/same-a.txt', numbered(20, 'same'));
  w('src/same-b.txt', numbered(20, 'same'));
  w('src/lib/util.txt', numbered(10, 'util'));
  w('docs/readme.md', '# readme\n');
  w('docs/guide.md', '# guide\n');
  w('logo.bin', Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 7919) % 256)));
  w('run.sh', '#!/bin/sh\necho run\n');
  fs.symlinkSync('src/app.txt', path.join(ws, 'link'));
}

describe('an agent\'s life through real mounts: diff, land, undo', () => {
  let d: TestDaemon;
  const mnt = (a: string) => d.mnt(a);
  const sh = (a: string, script: string) => d.sh(script, mnt(a));

  beforeAll(async () => {
    d = TestDaemon.create(prepare);
    await d.start();
  });

  afterAll(async () => {
    await d?.destroy();
  });

  it('cowfs diff | git apply on a fresh copy of the workspace reproduces the agent\'s tree', async () => {
    await d.json(['mount', 'differ', mnt('differ')]);
    sh('differ', [
      "sed -i 's/^line 7$/line seven/' src/app.txt",
      'mv src/same-b.txt src/renamed-b.txt', // identical content to same-a: the rename must pair by name
      'mv src/lib src/library', // a directory renamed
      'printf "\\x00\\x01\\x02" >> logo.bin', // binary, changed
      'head -c 5000 /dev/urandom > new.bin', // binary, new
      'chmod +x run.sh',
      'rm link && ln -s docs/readme.md link', // a symlink retargeted
      'ln -s nowhere dangling',
      "printf 'no newline at the end' > nonl.txt",
      ': > empty.txt',
      "echo 'ünïcödé' > 'name with spaces é.txt'",
      'rm docs/readme.md',
    ].join('\n'));
    const patch = execFileSync(process.execPath, [CLI, 'diff', 'differ', '--workspace', d.workspace], { maxBuffer: 1 << 26 });
    expect(patch.toString('latin1')).toContain('rename from src/same-b.txt');
    expect(patch.toString('latin1')).toContain('GIT binary patch');
    expect(patch.toString('latin1')).toContain('old mode 100644\nnew mode 100755');
    const copy = path.join(d.root, 'copy');
    fs.cpSync(d.workspace, copy, { recursive: true, verbatimSymlinks: true, filter: (src) => !src.includes('/.cowfs') });
    execFileSync('git', ['apply', '--whitespace=nowarn', '-'], { cwd: copy, input: patch });
    expect(treeChecksum(copy)).toBe(treeChecksum(mnt('differ')));

    const stat = await d.cli(['diff', 'differ', '--stat']);
    expect(stat.stdout).toContain('src/same-b.txt => src/renamed-b.txt');
    expect(stat.stdout).toMatch(/\d+ files changed/);
    const names = await d.cli(['diff', 'differ', '--name-only', '--', 'src']);
    expect(names.stdout.trim().split('\n').sort()).toEqual(['src/app.txt', 'src/library/util.txt', 'src/renamed-b.txt']);
    const json = JSON.parse((await d.cli(['diff', 'differ', '--json', '--', 'src/app.txt'])).stdout);
    expect(json.files).toEqual([expect.objectContaining({ path: 'src/app.txt', status: 'modified', added: 1, removed: 1 })]);
    // Since an event: only what came after it.
    const seq = (await d.json(['status'])).lastSeq;
    sh('differ', 'echo later >> src/app.txt');
    const since = await d.cli(['diff', 'differ', '--from', String(seq)]);
    expect(since.stdout).toContain('+later');
    expect(since.stdout).not.toContain('line seven');
    const bad = await d.cli(['diff', 'differ', '--from', 'x']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('not an event number');
  });

  it('lands into the workspace, with an unrelated change made there meanwhile', async () => {
    await d.json(['mount', 'lander', mnt('lander')]);
    sh('lander', "sed -i 's/^line 3$/line three/' src/app.txt && mkdir -p feature && echo feature > feature/new.txt && rm src/same-a.txt");
    await d.json(['commit', 'lander', '-m', 'feature']);
    sh('lander', 'echo uncommitted > scratch.txt');
    const dry = await d.json(['land', 'lander', '--dry-run']);
    expect((await d.cli(['status', '--workspace'])).stderr).toMatch(/--workspace needs a directory/);
    expect(dry.changed.map((c: any) => c.path).sort()).toEqual(['feature', 'feature/new.txt', 'src/app.txt', 'src/same-a.txt']);
    expect(fs.existsSync(path.join(d.workspace, 'feature'))).toBe(false);
    // Someone edits another line of the same file, and another file, in the workspace meanwhile.
    const app = path.join(d.workspace, 'src/app.txt');
    fs.writeFileSync(app, fs.readFileSync(app, 'utf8').replace('line 30\n', 'human 30\n'));
    fs.appendFileSync(path.join(d.workspace, 'docs/readme.md'), 'human notes\n');
    const r = await d.json(['land', 'lander', '--workspace']);
    expect(r.uncommitted).toBe(1);
    const text = fs.readFileSync(app, 'utf8');
    expect(text).toContain('line three\n');
    expect(text).toContain('human 30\n');
    expect(fs.readFileSync(path.join(d.workspace, 'feature/new.txt'), 'utf8')).toBe('feature\n');
    expect(fs.existsSync(path.join(d.workspace, 'src/same-a.txt'))).toBe(false);
    expect(fs.readFileSync(path.join(d.workspace, 'docs/readme.md'), 'utf8')).toContain('human notes');
    expect(fs.existsSync(path.join(d.workspace, 'scratch.txt'))).toBe(false);
    expect(fs.readdirSync(d.workspace).filter((n) => n.startsWith('.cowfs-landing'))).toEqual([]);
    // The agent now sits on the landed workspace: only its uncommitted file is a change of its own.
    const after = await d.cli(['diff', 'lander', '--name-only']);
    expect(after.stdout).toBe('scratch.txt\n');
    await cacheWindow();
    expect(sh('lander', 'cat src/app.txt')).toBe(text);
    const log = await d.json<any[]>(['log', 'lander']);
    expect(log.at(-1)).toMatchObject({ type: 'AGENT_LANDED', into: null, paths: expect.arrayContaining(['feature/new.txt']) });
  });

  it('refuses a landing that conflicts with the workspace, writing nothing', async () => {
    await d.json(['mount', 'clash', mnt('clash')]);
    sh('clash', 'echo "agent version" > added.txt && echo fine > other.txt');
    await d.json(['commit', 'clash', '-m', 'clash']);
    fs.writeFileSync(path.join(d.workspace, 'added.txt'), 'human version\n');
    const before = treeChecksum(d.workspace);
    const r = await d.cli(['land', 'clash']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('added.txt (content conflict)');
    expect(r.stderr).toMatch(/clash +\| agent version\n.*base +\| ?\n.*the workspace \| human version/);
    expect(r.stderr).toContain('nothing was written');
    const j = await d.cli(['land', 'clash', '--json']);
    expect(JSON.parse(j.stdout).error.code).toBe('conflict');
    expect(treeChecksum(d.workspace)).toBe(before);
    expect(fs.existsSync(path.join(d.workspace, 'other.txt'))).toBe(false);
    const wrong = await d.cli(['land', 'clash', '--into', 'lander']);
    expect(wrong.stderr).toContain('can only land into its parent');
  });

  it("refuses to land a name an agent made where the daemon keeps its state (hidden in every tree)", async () => {
    await d.json(['mount', 'sneaky', mnt('sneaky')]);
    sh('sneaky', 'mkdir .cowfs && echo planted > .cowfs/planted.txt && echo fine > fine.txt');
    await d.json(['commit', 'sneaky', '-m', 'sneaky']);
    const before = treeChecksum(d.workspace);
    for (const args of [['land', 'sneaky', '--dry-run'], ['land', 'sneaky']]) {
      const r = await d.cli(args);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/cannot land sneaky into the workspace: \.cowfs\S* is where the daemon keeps its state or mounts an agent; nothing was written/);
    }
    expect(fs.existsSync(path.join(d.stateDir, 'planted.txt'))).toBe(false);
    expect(fs.existsSync(path.join(d.workspace, 'fine.txt'))).toBe(false);
    expect(treeChecksum(d.workspace)).toBe(before);
    await d.json(['rm', 'sneaky']);
  });

  it('lands into the parent agent: a commit there that cascades', async () => {
    await d.json(['mount', 'parent', mnt('parent')]);
    await d.json(['mount', 'kid', mnt('kid'), '--parent', 'parent']);
    await d.json(['mount', 'sibling', mnt('sibling'), '--parent', 'parent']);
    await d.json(['mount', 'grandkid', mnt('grandkid'), '--parent', 'kid']);
    sh('kid', "sed -i 's/^line 10$/kid 10/' src/app.txt && echo kid > kid.txt");
    await d.json(['commit', 'kid', '-m', 'kid work']);
    sh('grandkid', 'echo grand > grand.txt');
    // After its commit, the kid edits the same line again, uncommitted: landing must not conflict with itself.
    sh('kid', "sed -i 's/^kid 10$/kid 10 again/' src/app.txt");
    sh('parent', 'echo "parent, uncommitted" > wip.txt');
    const r = await d.json(['land', 'kid']);
    expect(r.into).toBe('parent');
    expect(r.cascade.rebased).toEqual(expect.arrayContaining(['kid', 'sibling', 'grandkid']));
    await cacheWindow();
    expect(r.cascade.conflicted).toEqual([]);
    for (const a of ['parent', 'sibling', 'grandkid']) expect(sh(a, 'cat src/app.txt')).toContain('kid 10\n');
    expect(sh('kid', 'cat src/app.txt')).toContain('kid 10 again\n');
    expect(sh('sibling', 'cat kid.txt')).toBe('kid\n');
    expect(sh('grandkid', 'cat grand.txt')).toBe('grand\n');
    // The parent's own uncommitted file stayed uncommitted; the kid has nothing left to land.
    const plog = await d.json<any[]>(['log', 'parent']);
    const commit = plog.filter((e) => e.type === 'AGENT_COMMIT_CREATED').at(-1);
    expect(commit.changes.map((c: any) => c[0]).sort()).toEqual(['kid.txt', 'src/app.txt']);
    expect((await d.cli(['diff', 'kid', '--name-only'])).stdout).toBe('src/app.txt\n');
    expect((await d.cli(['diff', 'parent', '--name-only'])).stdout.split('\n')).toContain('wip.txt');
  });

  it('undo, then redo, through the mount; cowfs log shows it', async () => {
    await d.json(['mount', 'undoer', mnt('undoer')]);
    sh('undoer', 'echo v1 > notes.txt');
    const afterV1 = (await d.json(['status'])).lastSeq;
    sh('undoer', 'echo v2 > notes.txt && mkdir dir && echo x > dir/x.txt && rm src/app.txt');
    sh('undoer', 'echo v3 > notes.txt');
    expect(sh('undoer', 'cat notes.txt')).toBe('v3\n');
    const u = await d.json(['undo', 'undoer']);
    expect(u.ops).toBeGreaterThan(0);
    await cacheWindow();
    expect(sh('undoer', 'cat notes.txt')).toBe('v2\n');
    const redo = await d.json(['undo', 'undoer']);
    expect(redo.to).toBe(u.seq - 1 - u.ops);
    await cacheWindow();
    expect(sh('undoer', 'cat notes.txt')).toBe('v3\n');
    // Back to an event: the directory, the deleted file and the first content.
    await d.json(['undo', 'undoer', '--to', String(afterV1)]);
    await cacheWindow();
    expect(sh('undoer', 'cat notes.txt')).toBe('v1\n');
    expect(sh('undoer', 'ls')).not.toContain('dir');
    expect(sh('undoer', 'head -1 src/app.txt')).toBe('line 1\n');
    const human = await d.cli(['log', 'undoer']);
    expect(human.stdout).toMatch(/AGENT_UNDONE\s+back to event \d+/);
    const tooFar = await d.cli(['undo', 'undoer', '--to', '1']);
    expect(tooFar.code).toBe(1);
    expect(tooFar.stderr).toContain('base changed at event');
  });

  it('a cascade cut short by a crash (the commit made, the children not rebased) goes on at the next start', async () => {
    await d.json(['mount', 'cut', mnt('cut')]);
    await d.json(['mount', 'cut-kid', mnt('cut-kid'), '--parent', 'cut']);
    await d.json(['mount', 'cut-grandkid', mnt('cut-grandkid'), '--parent', 'cut-kid']);
    sh('cut-kid', 'echo kid > kid.txt');
    await d.json(['commit', 'cut-kid', '-m', 'kid']);
    await d.kill9();
    // What the crash left: the parent's commit in the store, its cascade not begun.
    const ov = await Overlay.open({ workspace: d.workspace, stateDir: d.stateDir });
    try {
      const fh = ov.tree('cut').create('from-parent.txt', 0o644, O_WRONLY | O_CREAT | O_TRUNC, 0, 0);
      ov.tree('cut').write(fh, Buffer.from('parent\n'), 7, 0);
      ov.tree('cut').release(fh);
      ov.commit('cut', 'not cascaded');
    } finally {
      await ov.close();
    }
    await d.start();
    expect(sh('cut-kid', 'cat from-parent.txt kid.txt')).toBe('parent\nkid\n');
    expect(sh('cut-grandkid', 'cat from-parent.txt kid.txt')).toBe('parent\nkid\n');
    expect(d.daemonLog()).toContain('a cascade was interrupted by a crash');
    await d.json(['land', 'cut-grandkid', '--dry-run']); // based on its parent's latest commit again
  });

  it('kill -9 in the middle of landing 1,000 files: after the restart the workspace holds all or none', async () => {
    const outcomes: string[] = [];
    for (const [i, killWhen] of (['preparing', 'renaming'] as const).entries()) {
      const agent = `bulk${i}`;
      await d.json(['mount', agent, mnt(agent)]);
      sh(agent, `mkdir gen${i} && for n in $(seq -w 1 1000); do echo "file $n of ${agent}" > gen${i}/f$n.txt; done`);
      await d.json(['commit', agent, '-m', '1000 files']);
      const gen = path.join(d.workspace, `gen${i}`);
      const land = execFile(process.execPath, [CLI, '--workspace', d.workspace, 'land', agent, '--into-workspace'], () => {});
      // Watch from this process, synchronously, for the moment to kill: temporary files appearing, or the first rename.
      const deadline = Date.now() + 30_000;
      let seen = -1;
      while (Date.now() < deadline) {
        if (killWhen === 'preparing' ? fs.readdirSync(d.workspace).some((n) => n.startsWith('.cowfs-landing')) : fs.existsSync(gen)) {
          await d.kill9();
          seen = fs.existsSync(gen) ? fs.readdirSync(gen).length : 0;
          break;
        }
      }
      land.kill();
      expect(seen).toBeGreaterThanOrEqual(0);
      await d.start();
      const landed = fs.existsSync(gen) ? fs.readdirSync(gen).length : 0;
      expect([0, 1000]).toContain(landed);
      expect(fs.readdirSync(d.workspace).filter((n) => n.startsWith('.cowfs-landing'))).toEqual([]);
      outcomes.push(`killed while ${killWhen} with ${seen} files in place: ${landed === 0 ? 'rolled back' : 'finished'}`);
      if (landed === 0) {
        // Rolled back: landing again works.
        await d.json(['land', agent]);
        expect(fs.readdirSync(gen)).toHaveLength(1000);
      }
      // No file half-written: every one holds exactly its content.
      for (const name of fs.readdirSync(gen)) expect(fs.readFileSync(path.join(gen, name), 'utf8')).toBe(`file ${name.slice(1, 5)} of ${agent}\n`);
      const log = await d.cli(['log', agent]);
      expect(log.stdout.match(/AGENT_LANDED/g)).toHaveLength(1);
    }
    console.log(outcomes.join('\n'));
  }, 180_000);
});
