import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { MountHandle, MountOptions } from '../../src/fuse/adapter-common.js';
import type { MountAdapter } from '../../src/fuse/adapters.js';
import type { ApiContext } from '../../src/daemon/api.js';
import { MountManager } from '../../src/daemon/mounts.js';
import { RunSessions } from '../../src/daemon/runs.js';
import type { Overlay } from '../../src/overlay/overlay.js';
import { openOverlay, removeTempDirs, tempDir } from '../helpers/core.js';

const log = pino({ level: 'silent' });

async function waitFor(cond: () => boolean): Promise<void> {
  for (const end = Date.now() + 10_000; !cond(); await new Promise((r) => setTimeout(r, 20))) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${cond}`);
  }
}

/** Lets every promise that can settle settle (setImmediate runs after the microtask queue drained). */
const settle = () => new Promise((r) => setImmediate(r));

/**
 * An in-memory MountAdapter whose mounts and unmounts finish only when the
 * test says (`finish`), so a test can put requests between them. It fails
 * the test's expectations if an agent ever had two mounts at once.
 */
class FakeAdapter implements MountAdapter {
  readonly name = 'fake';
  /** Operations started and not finished, oldest first. */
  readonly pending: { what: string; finish: () => void }[] = [];
  /** Every call, in order: `mount MP` or `unmount MP`. */
  readonly calls: string[] = [];
  /** The live mounts: mountpoint → the agent's mount source. */
  readonly live = new Map<string, string>();
  /** Paths the mounts were told are about to change (kept as the kernel holds them), and changed (invalidated). */
  readonly announced: string[] = [];
  readonly invalidated: string[] = [];
  /** What each mount's stats say of its kernel cache, and the mounts told to drop it, in order. */
  readonly cacheUse = new Map<string, { nodes: number; lastRequestAt: number }>();
  readonly drops: string[] = [];
  /** The names each drop was told to keep. */
  readonly kept: string[][] = [];

  mount(mountpoint: string, _tree: unknown, opts: MountOptions): Promise<MountHandle> {
    this.calls.push(`mount ${mountpoint}`);
    opts.watchBeforeChange?.((paths) => this.announced.push(...paths));
    opts.watchChanges?.((paths) => this.invalidated.push(...paths));
    return new Promise((resolve) => this.pending.push({
      what: `mount ${mountpoint}`,
      finish: () => {
        if ([...this.live.values()].includes(opts.fsname!)) throw new Error(`${opts.fsname} mounted twice`);
        this.live.set(mountpoint, opts.fsname!);
        resolve(this.handle(mountpoint));
      },
    }));
  }

  private handle(mountpoint: string): MountHandle {
    return {
      mountpoint, options: '', device: '', writeback: false, notified: () => Promise.resolve(),
      stats: () => ({ ops: {}, maxWrite: 0, maxRead: 0, eio: 0, openHandles: 0, nodes: 0, lastRequestAt: 0, ...this.cacheUse.get(mountpoint) }),
      dropKernelCache: (keep) => {
        this.drops.push(mountpoint);
        this.kept.push([...keep].sort());
        return 1;
      },
      unmount: () => {
        this.calls.push(`unmount ${mountpoint}`);
        return new Promise((resolve) => this.pending.push({
          what: `unmount ${mountpoint}`,
          finish: () => {
            this.live.delete(mountpoint);
            resolve();
          },
        }));
      },
    };
  }

  /** Finishes the one pending operation `what` once everything else that can run has run. */
  async finish(what: string): Promise<void> {
    await settle();
    expect(this.pending.map((p) => p.what)).toEqual([what]);
    this.pending.shift()!.finish();
    await settle();
  }
}

const opened: Overlay[] = [];
afterEach(async () => {
  for (const ov of opened.splice(0)) await ov.close();
  removeTempDirs();
});

async function setUp(): Promise<{ ov: Overlay; fake: FakeAdapter; mounts: MountManager; mp: string }> {
  const { ov } = await openOverlay({ 'a.txt': 'a\n' });
  opened.push(ov);
  ov.createAgent('a', null);
  const fake = new FakeAdapter();
  const mp = path.join(tempDir(), 'mnt');
  fs.mkdirSync(mp);
  return { ov, fake, mounts: new MountManager(ov, fake, log), mp };
}

describe('MountManager: requests for one agent while a mount or unmount is under way', () => {
  it('mount under way, then unmount, then mount: the unmount waits for the first mount, the second mount for the unmount', async () => {
    const { ov, fake, mounts, mp } = await setUp();
    const first = mounts.mount('a', mp);
    const unmounted = mounts.unmount('a', true);
    // The unmount is under way from the moment it was asked for: this mount must not join the first.
    const second = mounts.mount('a', mp);
    await fake.finish(`mount ${mp}`);
    await first;
    await fake.finish(`unmount ${mp}`);
    await unmounted;
    await fake.finish(`mount ${mp}`);
    await second;
    expect(fake.calls).toEqual([`mount ${mp}`, `unmount ${mp}`, `mount ${mp}`]);
    expect(mounts.mountpointOf('a')).toBe(mp);
    expect([...fake.live.keys()]).toEqual([mp]);
    // The unmount's "forget" came before the second mount: it is remembered again.
    expect(ov.agent('a').mountpoint).toBe(mp);
  });

  it('unmount, then unmount: one unmount of the mount, both requests resolve once it is gone', async () => {
    const { ov, fake, mounts, mp } = await setUp();
    const mounted = mounts.mount('a', mp);
    await fake.finish(`mount ${mp}`);
    await mounted;
    const u1 = mounts.unmount('a', true);
    const u2 = mounts.unmount('a', true);
    let resolved = 0;
    for (const u of [u1, u2]) void u.then(() => resolved++);
    await settle();
    expect(resolved).toBe(0);
    await fake.finish(`unmount ${mp}`);
    await Promise.all([u1, u2]);
    expect(fake.calls).toEqual([`mount ${mp}`, `unmount ${mp}`]);
    expect(mounts.mountpointOf('a')).toBeUndefined();
    expect(mounts.pendingFor('a')).toBeUndefined();
    expect(ov.agent('a').mountpoint).toBeNull();
  });

  it('a run acquiring the agent while its unmount is under way and a mount waits: the run takes the user\'s new mount', async () => {
    const { ov, fake, mounts, mp } = await setUp();
    let sockets = 0;
    const runs = new RunSessions(ov.stateDir, ov, mounts, async (socket) => {
      fs.writeFileSync(socket, ''); // stands for the listening socket (chowned by start)
      sockets++;
      return async () => { sockets--; };
    }, log);
    const ctx = { overlay: ov, mounts, runs } as unknown as ApiContext;
    const caller = { scope: null, onClose: () => undefined };
    const user = { agent: 'a', parent: null, uid: process.getuid!(), gid: process.getgid!(), rw: [] };

    const mounted = mounts.mount('a', mp);
    await fake.finish(`mount ${mp}`);
    await mounted;
    const unmounted = mounts.unmount('a', true);
    const run = runs.start(ctx, user, caller);
    const remounted = mounts.mount('a', mp);
    await fake.finish(`unmount ${mp}`);
    await unmounted;
    // The run decided nothing while a mount or unmount was under way: no run mount of its own beside the user's.
    await fake.finish(`mount ${mp}`);
    await remounted;
    const session = await run;
    expect(session.mountpoint).toBe(mp);
    expect(session.userMountpoint).toBe(mp);
    expect(fake.calls).toEqual([`mount ${mp}`, `unmount ${mp}`, `mount ${mp}`]);
    expect(await runs.end(session.id)).toEqual({ id: session.id, unmounted: false, removed: false });
    expect(mounts.mountpointOf('a')).toBe(mp);
    expect(sockets).toBe(0);
  });

  it('a run starting while the last run of the agent unmounts its run mount: a fresh run mount, never the one going away', async () => {
    const { ov, fake, mounts } = await setUp();
    const runs = new RunSessions(ov.stateDir, ov, mounts, async (socket) => {
      fs.writeFileSync(socket, '');
      return async () => undefined;
    }, log);
    const ctx = { overlay: ov, mounts, runs } as unknown as ApiContext;
    const caller = { scope: null, onClose: () => undefined };
    const user = { agent: 'a', parent: null, uid: process.getuid!(), gid: process.getgid!(), rw: [] };
    const runMp = path.join(ov.stateDir, 'mnt', 'a');

    const first = runs.start(ctx, user, caller);
    await fake.finish(`mount ${runMp}`);
    const s1 = await first;
    const ended = runs.end(s1.id);
    const second = runs.start(ctx, user, caller);
    await fake.finish(`unmount ${runMp}`);
    expect((await ended).unmounted).toBe(true);
    await fake.finish(`mount ${runMp}`);
    const s2 = await second;
    expect(s2.mountpoint).toBe(runMp);
    expect(mounts.mountpointOf('a')).toBe(runMp);
    expect([...fake.live.keys()]).toEqual([runMp]);
    // Its end unmounts the run mount it holds: the count of users was right.
    const end2 = runs.end(s2.id);
    await fake.finish(`unmount ${runMp}`);
    expect((await end2).unmounted).toBe(true);
    expect(fake.live.size).toBe(0);
  });

  it('mounted; unmount, mount, unmount: the requests take effect in the order asked, the agent ends unmounted and forgotten', async () => {
    const { ov, fake, mounts, mp } = await setUp();
    const mounted = mounts.mount('a', mp);
    await fake.finish(`mount ${mp}`);
    await mounted;
    const u1 = mounts.unmount('a', true);
    const m = mounts.mount('a', mp);
    const u2 = mounts.unmount('a', true);
    await fake.finish(`unmount ${mp}`);
    await u1;
    await fake.finish(`mount ${mp}`);
    await m;
    await fake.finish(`unmount ${mp}`);
    await u2;
    expect(fake.calls).toEqual([`mount ${mp}`, `unmount ${mp}`, `mount ${mp}`, `unmount ${mp}`]);
    expect(mounts.mountpointOf('a')).toBeUndefined();
    expect(fake.live.size).toBe(0);
    expect(mounts.pendingFor('a')).toBeUndefined();
    // A restart does not bring it back.
    expect(ov.agent('a').mountpoint).toBeNull();
  });

  it('shutdown while a mount is under way, or waits for an unmount: nothing is left mounted, no mount is made after', async () => {
    for (const remount of [false, true]) {
      const { fake, mounts, mp } = await setUp();
      let asked: Promise<void>[];
      if (remount) {
        const mounted = mounts.mount('a', mp);
        await fake.finish(`mount ${mp}`);
        await mounted;
        asked = [mounts.unmount('a', true), mounts.mount('a', mp)];
      } else {
        asked = [mounts.mount('a', mp)];
      }
      const stopped = mounts.unmountAll();
      await expect(mounts.mount('a', mp)).rejects.toThrow(/stopping/);
      if (remount) await fake.finish(`unmount ${mp}`);
      await fake.finish(`mount ${mp}`);
      await fake.finish(`unmount ${mp}`);
      await Promise.all([...asked, stopped]);
      expect(fake.live.size).toBe(0);
      expect(mounts.count).toBe(0);
      expect(mounts.mountpoints).toEqual([]);
    }
  });
});

describe('MountManager: the node ids the kernel holds, kept to a budget', () => {
  it('past the budget the idlest mount drops its kernel cache; a working one never; a dropped one again only after new requests', async () => {
    const { ov, fake, mounts, mp } = await setUp();
    ov.createAgent('b', null);
    const mpB = `${mp}-b`;
    fs.mkdirSync(mpB);
    for (const [agent, at] of [['a', mp], ['b', mpB]] as const) {
      const m = mounts.mount(agent, at);
      await fake.finish(`mount ${at}`);
      await m;
    }
    const now = 1_000_000_000;
    fake.cacheUse.set(mp, { nodes: 100, lastRequestAt: now - 120_000 });
    fake.cacheUse.set(mpB, { nodes: 100, lastRequestAt: now - 90_000 });
    expect(mounts.keepKernelCacheBudget(250, now)).toEqual([]); // within the budget
    // A process working in a directory of a's: that name is kept (invalidated, its getcwd would fail).
    fs.mkdirSync(path.join(mp, 'work', 'deeper'), { recursive: true });
    const sleeper = spawn('sleep', ['30'], { cwd: path.join(mp, 'work', 'deeper'), stdio: 'ignore' });
    try {
      await waitFor(() => fs.readlinkSync(`/proc/${sleeper.pid}/cwd`).endsWith('deeper'));
      expect(mounts.keepKernelCacheBudget(150, now)).toEqual(['a']); // the idlest is enough
    } finally {
      sleeper.kill('SIGKILL');
    }
    expect(fake.kept[0]).toEqual(['work']);
    expect(mounts.keepKernelCacheBudget(150, now + 1)).toEqual(['b']); // a's FORGETs may still be coming: not a again
    expect(fake.drops).toEqual([mp, mpB]);
    fake.cacheUse.set(mp, { nodes: 100, lastRequestAt: now + 10_000 });
    expect(mounts.keepKernelCacheBudget(50, now + 20_000)).toEqual([]); // a works again: busy
    expect(mounts.keepKernelCacheBudget(50, now + 80_000)).toEqual(['a']);
    const closed = mounts.unmountAll();
    await fake.finish(`unmount ${mp}`);
    await fake.finish(`unmount ${mpB}`);
    await closed;
  });
});

describe('MountManager: what a mount is told of changes from outside it', () => {
  it('a rebase whose transaction fails after announcing its paths: the mount is told to drop what it kept there', async () => {
    const { ov, fake, mounts, mp } = await setUp();
    const mounted = mounts.mount('a', mp);
    await fake.finish(`mount ${mp}`);
    await mounted;
    expect(() => ov.applyRebase('a', {
      base: null, changes: [['a.txt', undefined]], headChanges: [], merged: [], refined: [], conflicts: [],
      also: () => { throw new Error('MDB_MAP_FULL'); },
    })).toThrow('MDB_MAP_FULL');
    expect(fake.announced).toEqual(['a.txt']);
    expect(fake.invalidated).toContain('a.txt');
    // A change that commits is not invalidated twice for its announcement (its event does it once).
    fake.invalidated.length = 0;
    ov.applyRebase('a', { base: null, changes: [['a.txt', undefined]], headChanges: [], merged: [], refined: [], conflicts: [] });
    expect(fake.invalidated.filter((p) => p === 'a.txt')).toHaveLength(1);
    const unmounted = mounts.unmount('a', true);
    await fake.finish(`unmount ${mp}`);
    await unmounted;
  });
});
