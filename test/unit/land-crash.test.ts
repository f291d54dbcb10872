import { afterEach, describe, expect, it, vi } from 'vitest';
import { Cascade } from '../../src/cascade/cascade.js';
import { land } from '../../src/land/land.js';
import type { Overlay } from '../../src/overlay/overlay.js';
import { openOverlay, readFile, removeTempDirs, writeFile } from '../helpers/core.js';

// A kill -9 between a landing's commit into the parent and the landing agent's settling there.
const crash = vi.hoisted(() => ({ on: false }));
vi.mock('../../src/land/settle.js', async (importOriginal) => {
  const m = await importOriginal<typeof import('../../src/land/settle.js')>();
  return {
    ...m,
    settleLanded: (...a: Parameters<typeof m.settleLanded>) => {
      if (crash.on) throw new Error('killed here');
      return m.settleLanded(...a);
    },
  };
});

const opened: Overlay[] = [];
afterEach(async () => {
  for (const ov of opened.splice(0)) await ov.close();
  removeTempDirs();
});

describe('a landing into the parent cut short by a crash', () => {
  it('is settled at the next start as the landing would have: the agent keeps its later edits, with no conflict against its own work', async () => {
    const { ov } = await openOverlay({ 'app.txt': 'one\ntwo\nthree\n', 'd/a': 'a\n' });
    opened.push(ov);
    const cascade = new Cascade(ov);
    ov.createAgent('p', null);
    ov.commit('p', 'p0');
    ov.createAgent('c', 'p');
    const c = ov.tree('c');
    writeFile(c, 'app.txt', 'ONE\ntwo\nthree\n');
    c.unlink('d/a');
    c.rmdir('d');
    ov.commit('c', 'c1');
    writeFile(c, 'app.txt', 'ONE!\ntwo\nthree\n'); // uncommitted, after the landed commit
    crash.on = true;
    await expect(land(ov, cascade, 'c', {})).rejects.toThrow('killed here');
    crash.on = false;
    expect(ov.agent('c').base).not.toBe(ov.agent('p').head); // the commit into p is there, c not settled
    const report = cascade.resumeInterrupted();
    expect(report.failed).toEqual([]);
    expect(report.rebased).toContain('c');
    expect(ov.agent('c').base).toBe(ov.agent('p').head);
    expect(ov.agent('c').conflicts ?? {}).toEqual({});
    expect(readFile(c, 'app.txt')).toBe('ONE!\ntwo\nthree\n');
    expect(readFile(ov.tree('p'), 'app.txt')).toBe('ONE\ntwo\nthree\n');
  });
});
