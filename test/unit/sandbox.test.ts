import { describe, expect, it } from 'vitest';
import { coverPaths, insideCwd, refuseRw, SANDBOX_SOCKET, sandboxCommand, type SandboxPlan } from '../../src/sandbox/bwrap.js';
import { authorize, scopeResult } from '../../src/daemon/scope.js';

const plan = (over: Partial<SandboxPlan> = {}): SandboxPlan => ({
  agent: 'a',
  workspace: '/home/u/proj',
  agentTree: '/home/u/proj/.cowfs/mnt/a',
  stateDir: '/home/u/proj/.cowfs',
  hide: ['/home/u/proj/.cowfs/mnt/a', '/home/u/views/b', '/tmp/c'],
  rw: [],
  net: 'host',
  cwd: '/home/u/proj/src',
  socket: '/home/u/proj/.cowfs/run/x.sock',
  install: '/usr/lib/node_modules/cowfs',
  command: ['claude', '-p', 'hi'],
  ...over,
});

/** The bwrap part of the argv, as [option, ...operands] groups, in order. */
function bwrapOps(args: string[]): string[] {
  const start = args.indexOf('bwrap') + 1;
  const end = args.indexOf('--', start);
  return args.slice(start, end);
}

describe('the bubblewrap command line', () => {
  it('runs bwrap inside a private mount namespace, then CMD with its arguments untouched', () => {
    const c = sandboxCommand(plan(), {});
    expect(c.file).toBe('unshare');
    expect(c.args.slice(0, 5)).toEqual(['--mount', '--propagation', 'private', '--', 'bwrap']);
    expect(c.args.slice(-3)).toEqual(['claude', '-p', 'hi']);
  });

  it('keeps the cowfs installation readable when it lies under /tmp (a checkout there), and only then', () => {
    const under = bwrapOps(sandboxCommand(plan({ install: '/tmp/ci/cowfs' }), {}).args).join(' ');
    expect(under).toContain('--ro-bind /tmp/ci/cowfs /tmp/ci/cowfs');
    expect(under).toContain('--perms 0755 --dir /tmp/ci');
    expect(bwrapOps(sandboxCommand(plan(), {}).args)).not.toContain('/usr/lib/node_modules/cowfs');
  });

  it('mounts in an order where later mounts win: / read-only, /tmp, covers, then the agent over the workspace', () => {
    const ops = bwrapOps(sandboxCommand(plan({ rw: ['/home/u/.npm'] }), {}).args);
    const at = (...seq: string[]) => ops.findIndex((_, i) => seq.every((s, j) => ops[i + j] === s));
    const order = [
      at('--ro-bind', '/', '/'), at('--tmpfs', '/tmp'), at('--bind', '/home/u/.npm', '/home/u/.npm'),
      at('--tmpfs', '/home/u/views/b'), at('--bind', '/home/u/proj/.cowfs/mnt/a', '/home/u/proj'),
      at('--bind', '/home/u/proj/.cowfs/run/x.sock', SANDBOX_SOCKET),
    ];
    expect(order.every((i) => i >= 0)).toBe(true);
    expect([...order].sort((x, y) => x - y)).toEqual(order);
    expect(ops).toEqual(expect.arrayContaining(['--unshare-pid', '--new-session', '--die-with-parent', '--chdir', '/home/u/proj/src']));
  });

  it('drops every capability of root, or switches to the user with setpriv', () => {
    const root = sandboxCommand(plan(), {}).args;
    expect(bwrapOps(root)).toEqual(expect.arrayContaining(['--cap-drop', 'ALL']));
    expect(root).not.toContain('setpriv');
    const u = sandboxCommand(plan({ user: { uid: 1000, gid: 1001, name: 'dev', home: '/home/dev' } }), { HOME: '/root' });
    const i = u.args.indexOf('setpriv');
    expect(u.args.slice(i, i + 7)).toEqual(['setpriv', '--reuid=1000', '--regid=1001', '--init-groups', '--inh-caps=-all', '--no-new-privs', '--']);
    expect(u.env).toMatchObject({ HOME: '/home/dev', USER: 'dev', LOGNAME: 'dev' });
    // Its /proc is mounted before the switch, without bwrap's covers, so a sandbox nested inside can mount its own.
    expect(bwrapOps(u.args)).not.toContain('--proc');
    expect(u.args.slice(i - 4, i)).toEqual(['sh', '-c', 'mount -t proc -o nosuid,nodev,noexec proc /proc && exec "$@"', 'sh']);
    expect(bwrapOps(root)).toEqual(expect.arrayContaining(['--proc', '/proc']));
    expect(sandboxCommand(plan({ user: { uid: 4242, gid: 4242 } }), {}).args).toContain('--clear-groups');
  });

  it('cuts the network only with --net none', () => {
    expect(bwrapOps(sandboxCommand(plan(), {}).args)).not.toContain('--unshare-net');
    expect(bwrapOps(sandboxCommand(plan({ net: 'none' }), {}).args)).toContain('--unshare-net');
  });

  it('gives CMD its agent, workspace and socket, and no state directory', () => {
    const env = sandboxCommand(plan(), { PATH: '/bin', COWFS_STATE_DIR: '/home/u/proj/.cowfs' }).env;
    expect(env).toMatchObject({ PATH: '/bin', COWFS_AGENT: 'a', COWFS_WORKSPACE: '/home/u/proj', COWFS_SOCKET: SANDBOX_SOCKET });
    expect(env.COWFS_STATE_DIR).toBeUndefined();
  });

  it('recreates a TMPDIR below /tmp in the private /tmp, and opens the way to mounts below /tmp to every user', () => {
    const ops = bwrapOps(sandboxCommand(plan({ workspace: '/tmp/mine/t1/ws' }), { TMPDIR: '/tmp/mine' }).args).join(' ');
    for (const d of ['--perms 1777 --dir /tmp/mine ', '--perms 0755 --dir /tmp/mine/t1 ', '--perms 0755 --dir /tmp/.cowfs ']) expect(ops).toContain(d);
    expect(ops.indexOf('/tmp/mine ')).toBeLessThan(ops.indexOf('/tmp/mine/t1 '));
    expect(ops).not.toContain('--dir /tmp/mine/t1/ws');
  });

  it('covers the state directory and mounts that are not already out of sight, each once', () => {
    expect(coverPaths(plan())).toEqual(['/home/u/views/b']);
    expect(coverPaths(plan({ stateDir: '/srv/state', hide: ['/srv/state/mnt/a', '/srv/views', '/srv/views/b'] })))
      .toEqual(['/srv/state', '/srv/views']);
  });

  it('covers what lies under /tmp when a --rw path brings that part of the host /tmp back', () => {
    const under = { stateDir: '/tmp/x/state', hide: ['/tmp/x/mnt/b', '/tmp/y/c'] };
    expect(coverPaths(plan(under))).toEqual([]);
    expect(coverPaths(plan({ ...under, rw: ['/tmp/x'] }))).toEqual(['/tmp/x/state', '/tmp/x/mnt/b']);
    const ops = bwrapOps(sandboxCommand(plan({ ...under, rw: ['/tmp/x'] }), {}).args).join(' ');
    expect(ops.indexOf('--tmpfs /tmp/x/state')).toBeGreaterThan(ops.indexOf('--bind /tmp/x /tmp/x'));
  });

  it('refuses --rw paths that would open the real workspace, the state directory or a mount', () => {
    const p = plan({ stateDir: '/srv/state' });
    expect(refuseRw('/home/u/proj/node_modules', p)).toMatch(/inside the workspace/);
    expect(refuseRw('/srv/state/blobs', p)).toMatch(/state directory/);
    expect(refuseRw('/home/u/views/b/x', p)).toMatch(/inside an agent's mount/);
    expect(refuseRw('/home/u/.npm', p)).toBeUndefined();
    expect(() => sandboxCommand(plan({ rw: ['/home/u/proj'] }), {})).toThrow(/inside the workspace/);
  });

  it('maps the working directory into the workspace path', () => {
    expect(insideCwd('/home/u/proj/src/lib', '/home/u/proj', null, '/home/u/proj/.cowfs')).toBe('/home/u/proj/src/lib');
    expect(insideCwd('/home/u/views/a/src', '/home/u/proj', '/home/u/views/a', '/home/u/proj/.cowfs')).toBe('/home/u/proj/src');
    expect(insideCwd('/etc', '/home/u/proj', null, '/home/u/proj/.cowfs')).toBe('/home/u/proj');
    expect(insideCwd('/home/u/proj/.cowfs/blobs', '/home/u/proj', null, '/home/u/proj/.cowfs')).toBe('/home/u/proj');
    expect(insideCwd('/home/u/project2', '/home/u/proj', null, '/x')).toBe('/home/u/proj');
  });
});

describe('the API scoped to one agent', () => {
  it('fills in the agent and refuses another one', () => {
    expect(authorize('a', 'commit', { message: 'm' })).toEqual({ message: 'm', agent: 'a' });
    expect(authorize('a', 'log', { agent: 'a' })).toEqual({ agent: 'a' });
    for (const m of ['status', 'commit', 'conflicts', 'resolve', 'log', 'events.follow', 'diff', 'undo']) {
      expect(() => authorize('a', m, { agent: 'b' }), m).toThrow(/can only use a, not b/);
    }
  });

  it('refuses verbs that create, mount, remove or write outside the agent, and unknown ones', () => {
    for (const m of ['mount', 'unmount', 'rm', 'replay', 'run.start', 'run.end', 'land', 'export', 'import', 'have', 'gc', 'something-new']) {
      expect(() => authorize('a', m, { agent: 'a' }), m).toThrow(/not allowed inside the sandbox of agent a/);
    }
    expect(() => authorize('a', 'config', { key: 'refine', value: true })).toThrow(/changing a setting/);
    expect(authorize('a', 'config', { key: 'refine' })).toEqual({ key: 'refine' });
    expect(authorize(null, 'rm', { agent: 'b' })).toEqual({ agent: 'b' });
  });

  it('lists the agent alone', () => {
    const agents = [{ name: 'a' }, { name: 'b' }];
    expect(scopeResult('a', 'ls', agents)).toEqual([{ name: 'a' }]);
    expect(scopeResult(null, 'ls', agents)).toBe(agents);
  });

  it('refuses to show an event its log does not show before anything is computed', () => {
    const asked: number[] = [];
    const ownLog = (seq: number) => {
      asked.push(seq);
      return seq !== 7;
    };
    // Refused by the request alone: the handler (which rebuilds both trees of the event) never runs.
    expect(() => authorize('a', 'show', { seq: 7 }, ownLog)).toThrow(/event 7 belongs to another agent/);
    expect(authorize('a', 'show', { seq: 8 }, ownLog)).toEqual({ seq: 8 });
    expect(asked).toEqual([7, 8]);
    expect(authorize(null, 'show', { seq: 7 }, () => false)).toEqual({ seq: 7 });
  });
});
