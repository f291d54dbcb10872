import { afterEach, describe, expect, it } from 'vitest';
import { Layer } from '../../src/overlay/layer.js';
import { opsBetween } from '../../src/overlay/layer-ops.js';
import type { Overlay } from '../../src/overlay/overlay.js';
import { errnoOf, openOverlay, removeTempDirs, snapshot, writeFile } from '../helpers/core.js';
import { prng } from '../helpers/random.js';

const opened: Overlay[] = [];
afterEach(async () => {
  for (const ov of opened.splice(0)) await ov.close();
  removeTempDirs();
});

/** One random change to the agent's tree; failures (ENOENT, EEXIST…) are part of the game and change nothing. */
function randomStep(ov: Overlay, agent: string, rnd: () => number, n: number): void {
  const t = ov.tree(agent);
  const pick = <T>(xs: T[]) => xs[Math.floor(rnd() * xs.length)]!;
  const dirs = ['', 'src', 'src/lib', 'docs', 'new'];
  const name = () => `${pick(dirs)}/${pick(['a', 'b', 'c'])}.txt`.replace(/^\//, '');
  errnoOf(() => {
    switch (Math.floor(rnd() * 7)) {
      case 0: case 1: return writeFile(t, name(), `content ${n}\n`);
      case 2: return t.unlink(name());
      case 3: return t.mkdir(pick(dirs.slice(1)), 0o755, 0, 0);
      case 4: return t.rename(pick(dirs.slice(1)), pick(dirs.slice(1)), 0);
      case 5: return t.symlink(`target-${n}`, `${pick(dirs)}/link`.replace(/^\//, ''), 0, 0);
      default: return t.chmod(name(), rnd() < 0.5 ? 0o755 : 0o600);
    }
  });
}

describe('undo', () => {
  it('puts the tree back to any event since the agent\'s base, as new events that replay', async () => {
    for (let seed = 1; seed <= 12; seed++) {
      const { ov } = await openOverlay({ 'src/a.txt': 'a\n', 'src/lib/b.txt': 'b\n', 'docs/c.txt': 'c\n', 'top.txt': 'top\n' });
      opened.push(ov);
      const rnd = prng(seed);
      ov.createAgent('x', null);
      const seen = new Map<number, Record<string, string>>([[ov.log.head, snapshot(ov.tree('x').tree, ov)]]);
      for (let i = 0; i < 25; i++) {
        randomStep(ov, 'x', rnd, i);
        seen.set(ov.log.head, snapshot(ov.tree('x').tree, ov));
      }
      const seqs = [...seen.keys()];
      for (let k = 0; k < 4; k++) {
        const to = seqs[Math.floor(rnd() * seqs.length)]!;
        const now = snapshot(ov.tree('x').tree, ov);
        const r = ov.undo('x', to);
        expect(snapshot(ov.tree('x').tree, ov), `seed ${seed}: undo to ${to}`).toEqual(seen.get(to));
        expect(snapshot(ov.replay('x'), ov), `seed ${seed}: replay after undo`).toEqual(seen.get(to));
        if (r.seq === null) continue;
        // The undo itself is undone by the next undo (a redo).
        ov.undo('x');
        expect(snapshot(ov.tree('x').tree, ov), `seed ${seed}: redo`).toEqual(now);
        ov.undo('x');
        seen.set(ov.log.head, snapshot(ov.tree('x').tree, ov));
      }
    }
  });

  it('never reaches behind a rebase, and says so', async () => {
    const { ov } = await openOverlay({ 'a.txt': 'a\n' });
    opened.push(ov);
    ov.createAgent('p', null);
    ov.createAgent('c', 'p');
    writeFile(ov.tree('c'), 'mine.txt', 'mine\n');
    const early = ov.log.head;
    writeFile(ov.tree('p'), 'a.txt', 'p\n');
    ov.commit('p', 'p1');
    const { Cascade } = await import('../../src/cascade/cascade.js');
    new Cascade(ov).fromCommit('p');
    expect(() => ov.undo('c', early)).toThrow(/base changed at event \d+/);
    expect(() => ov.undo('c')).toThrow(/nothing to undo/);
  });
});

describe('opsBetween', () => {
  it('turns one layer into another through ordinary operations', () => {
    const file = (hash: string) => ({ kind: 'file' as const, hash, size: 1, mode: 0o644, mtimeMs: 0, ino: 1, uid: 0, gid: 0, baseHash: null });
    const dir = { kind: 'dir' as const, mode: 0o755, mtimeMs: 0, ino: 2, uid: 0, gid: 0, opaque: true, redirect: null };
    const current = new Layer([['d', dir], ['d/x', file('1')], ['d/y', file('2')], ['f', file('3')], ['gone', { kind: 'whiteout' }]]);
    const target = new Layer([['d', file('4')], ['f', file('5')], ['e', dir], ['e/z', file('6')], ['w', { kind: 'whiteout' }]]);
    const ops = opsBetween(current, target);
    for (const op of ops) current.apply(op);
    expect([...current.entriesList()].sort()).toEqual([...target.entriesList()].sort());
    expect(ops.map((o) => o.type)).toEqual(['delete', 'delete', 'delete', 'put', 'mkdir', 'put', 'put', 'delete']);
  });
});
