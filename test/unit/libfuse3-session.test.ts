/**
 * The libfuse 3 adapter's session without a kernel: requests are dispatched by the test, replies go
 * to a binding that answers nothing. For what is decided in JavaScript alone (which handles it keeps).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Libfuse3Session } from '../../src/fuse/libfuse3-adapter.js';
import { Op, type Binding, type Native } from '../../src/fuse/libfuse3-binding.js';
import { HandleBudget } from '../../src/fuse/handle-budget.js';
import type { Overlay } from '../../src/overlay/overlay.js';
import { openOverlay, removeTempDirs } from '../helpers/core.js';

/** Every reply and notification is a no-op that succeeded. */
const silentBinding = new Proxy({}, { get: () => () => 0 }) as Binding;
const silentLog = { error: () => undefined, warn: () => undefined, info: () => undefined, debug: () => undefined };

const opened: Overlay[] = [];
afterEach(async () => {
  for (const ov of opened.splice(0)) await ov.close();
  removeTempDirs();
});

describe('libfuse 3 session: the handles kept for files the kernel holds', () => {
  it('files held at paths a change announces get pinned handles inside its transaction without putting any written file there', async () => {
    const n = 100; // > the budget below
    const files: Record<string, string> = { 'w.txt': 'w\n' };
    for (let i = 0; i < n; i++) files[`f${i}`] = `${i}\n`;
    const { ov } = await openOverlay(files);
    opened.push(ov);
    ov.createAgent('a', null);
    const tree = ov.tree('a');
    const s = new Libfuse3Session(silentBinding, tree, silentLog as never, 1, new HandleBudget(64));
    s.session = {} as Native;
    // A file written through the mount: its handle is the oldest, and unpinned (its put comes when idle).
    const w = s.nodes.lookup('w.txt', false);
    s.dispatch(Op.WRITE, {} as Native, w.id, undefined, undefined, Buffer.from('written\n'), 0, 0, 0, 0, 0, 0, 0, 0);
    const held = Object.keys(files).filter((p) => p !== 'w.txt');
    for (const p of held) s.nodes.lookup(p, false);

    const duringTxn: string[] = [];
    let inTxn = false;
    const off = ov.log.subscribe((ev) => { if (inTxn) duringTxn.push(`${ev.type} ${'path' in ev ? ev.path : ''}`); });
    try {
      ov.store.txn(() => {
        inTxn = true;
        try {
          s.keepHeld(held);
        } finally {
          inTxn = false;
        }
      });
    } finally {
      off();
    }
    expect(duringTxn).toEqual([]);
    expect(s.openHandles).toBe(n + 1);
    // Once the written handle goes (here: every unpinned one), its file is put as usual.
    s.releaseNodeHandles(false);
    expect(ov.tree('a').layer.get('w.txt')).toMatchObject({ kind: 'file', size: 8 });
    s.releaseNodeHandles(true); // as at the session's end: the idle sweep stops
  });
});

describe('libfuse 3 sessions: one budget of handles for every mount of the daemon', () => {
  const read = (s: Libfuse3Session, p: string) => {
    const n = s.nodes.lookup(p, false);
    s.dispatch(Op.READ, {} as Native, n.id, undefined, undefined, undefined, 0, 4096, 0, 0, 0, 0, 0, 0);
  };

  it('a mount over the budget gives back its oldest; a new mount takes from the one holding the most; a written file given back is put', async () => {
    const files: Record<string, string> = {};
    for (let i = 0; i < 12; i++) files[`f${i}`] = `${i}\n`;
    const { ov } = await openOverlay(files);
    opened.push(ov);
    ov.createAgent('a', null);
    ov.createAgent('b', null);
    const budget = new HandleBudget(8);
    const a = new Libfuse3Session(silentBinding, ov.tree('a'), silentLog as never, 1, budget);
    const b = new Libfuse3Session(silentBinding, ov.tree('b'), silentLog as never, 1, budget);
    a.session = b.session = {} as Native;
    try {
      // a's first handle is a write: its put comes when the handle goes.
      const w = a.nodes.lookup('f0', false);
      a.dispatch(Op.WRITE, {} as Native, w.id, undefined, undefined, Buffer.from('new\n'), 0, 0, 0, 0, 0, 0, 0, 0);
      for (let i = 1; i < 10; i++) read(a, `f${i}`);
      expect(a.heldHandles).toBe(8);
      expect(budget.held).toBe(8);
      expect(ov.tree('a').layer.get('f0')).toMatchObject({ kind: 'file', size: 4 }); // the oldest went: put

      for (let i = 0; i < 6; i++) read(b, `f${i}`);
      expect(budget.held).toBe(8);
      expect([a.heldHandles, b.heldHandles]).toEqual([4, 4]); // each time from the one holding the most
      // Both still read what they should through the handles they have, or new ones.
      read(a, 'f9');
      read(b, 'f11');
      expect(budget.held).toBe(8);
    } finally {
      a.releaseNodeHandles(true);
      b.releaseNodeHandles(true);
    }
    expect(budget.held).toBe(0);
  });

  it('pinned handles are never given back, and a mount at its end leaves the budget', async () => {
    const { ov } = await openOverlay({ 'p0': '0\n', 'p1': '1\n', 'p2': '2\n', 'r': 'r\n' });
    opened.push(ov);
    ov.createAgent('a', null);
    const budget = new HandleBudget(2);
    const a = new Libfuse3Session(silentBinding, ov.tree('a'), silentLog as never, 1, budget);
    a.session = {} as Native;
    for (const p of ['p0', 'p1', 'p2']) a.nodes.lookup(p, false);
    a.keepHeld(['p0', 'p1', 'p2']); // pins: over the budget, and kept
    expect(a.heldHandles).toBe(3);
    read(a, 'r'); // nothing to give back but its own new one, which it keeps
    expect(a.heldHandles).toBe(4);
    a.dispatch(Op.EXIT, undefined, 0, undefined, undefined, undefined, 0, 0, 0, 0, 0, 0, 0, 0);
    expect(budget.held).toBe(0);
  });
});

describe('libfuse 3 session: its end', () => {
  it('closes the session and reports its end even when releasing the files left open throws, and logs why', async () => {
    const { ov } = await openOverlay({ 'w.txt': 'w\n' });
    opened.push(ov);
    ov.createAgent('a', null);
    const real = ov.tree('a');
    const tree = new Proxy(real, {
      get: (t, k) => (k === 'releaseAll' ? () => { throw new Error('disk gone'); } : Reflect.get(t, k, t)),
    });
    const calls: string[] = [];
    const binding = new Proxy({}, { get: (_, k) => () => { calls.push(String(k)); return 0; } }) as Binding;
    const errors: unknown[] = [];
    const log = { ...silentLog, error: (o: unknown) => { errors.push(o); } };
    const s = new Libfuse3Session(binding, tree, log as never, 1);
    s.session = {} as Native;
    let ended = false;
    s.onExit = () => { ended = true; };
    const w = s.nodes.lookup('w.txt', false);
    s.dispatch(Op.WRITE, {} as Native, w.id, undefined, undefined, Buffer.from('written\n'), 0, 0, 0, 0, 0, 0, 0, 0);
    expect(s.openHandles).toBe(1);

    s.dispatch(Op.EXIT, undefined, 0, undefined, undefined, undefined, 0, 0, 0, 0, 0, 0, 0, 0);
    expect(calls).toContain('close');
    expect(ended).toBe(true);
    expect(JSON.stringify(errors.map((e) => String((e as { err: unknown }).err)))).toContain('disk gone');
    expect(s.exited).toBe(true);
  });
});
