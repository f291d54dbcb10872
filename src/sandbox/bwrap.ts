/**
 * The namespace `cowfs run` puts a program in, as a bubblewrap command line.
 * Pure: the plan in, the argv and environment out (unit-tested), so what the
 * sandbox can see is readable in one place.
 *
 * Inside: the whole filesystem read-only, a fresh /dev, /proc (of a private
 * pid namespace: no process outside can be seen, so neither can its
 * /proc/PID/root or cwd) and /tmp; the agent's tree bound read-write over the
 * workspace's own absolute path; the state directory and every agent mount
 * covered by an empty tmpfs; `--rw` paths bound read-write; the API socket
 * scoped to this agent at SANDBOX_SOCKET.
 *
 * The whole command runs under `unshare --propagation private`: bwrap makes
 * its mounts slaves of the host's, and on a host whose mounts are shared (a
 * systemd machine) an agent mounted after the sandbox started would appear
 * in it, writable. A private namespace around bwrap receives nothing.
 */
import path from 'node:path';

/** Where CMD finds the daemon (a socket that speaks for its agent alone). */
export const SANDBOX_SOCKET = '/tmp/.cowfs/daemon.sock';

export interface SandboxUser {
  uid: number;
  gid: number;
  /** From the password database, when the user is in it: supplementary groups, HOME, USER. */
  name?: string;
  home?: string;
}

export interface SandboxPlan {
  agent: string;
  /** The workspace's absolute path: where the agent's tree appears inside. */
  workspace: string;
  /** The host path of the agent's FUSE mount (the bind source). */
  agentTree: string;
  stateDir: string;
  /** Host paths to make unreachable: every agent's mountpoint. */
  hide: string[];
  /** Host paths to open for writing (absolute, symlinks resolved). */
  rw: string[];
  net: 'host' | 'none';
  /** Where CMD starts, inside. */
  cwd: string;
  /** The host path of the socket scoped to this agent. */
  socket: string;
  /** The cowfs installation, so `cowfs` works inside: read-only there, also when it lies under /tmp. */
  install: string;
  /** Run CMD as this user instead of root (without capabilities either way). */
  user?: SandboxUser;
  command: string[];
}

export interface SandboxCommand {
  file: string;
  args: string[];
  env: NodeJS.ProcessEnv;
}

const within = (p: string, dir: string): boolean => p === dir || p.startsWith(dir === '/' ? '/' : `${dir}/`);

/** Why a `--rw` path cannot be opened, or undefined when it can. */
export function refuseRw(p: string, plan: Pick<SandboxPlan, 'workspace' | 'stateDir' | 'hide'>): string | undefined {
  if (within(p, plan.workspace)) return `--rw ${p} is inside the workspace, which the sandbox shows as the agent's own tree (already writable)`;
  if (within(p, plan.stateDir)) return `--rw ${p} is inside the state directory, which the sandbox must not reach`;
  const m = plan.hide.find((h) => within(p, h));
  if (m) return `--rw ${p} is inside an agent's mount (${m}), which the sandbox must not reach`;
  return undefined;
}

/**
 * The paths to cover with an empty tmpfs: those not already out of sight
 * (under the workspace, another cover, or the fresh /tmp — unless a `--rw`
 * path brings that part of the host's /tmp back).
 */
export function coverPaths(plan: Pick<SandboxPlan, 'workspace' | 'stateDir' | 'hide' | 'rw'>): string[] {
  const out: string[] = [];
  const shadowed = (p: string) => within(p, plan.workspace) || (within(p, '/tmp') && !plan.rw.some((r) => within(p, r)));
  for (const p of [plan.stateDir, ...plan.hide].map((x) => path.resolve(x)).sort((a, b) => a.length - b.length)) {
    if (shadowed(p) || out.some((o) => within(p, o))) continue;
    out.push(p);
  }
  return out;
}

/**
 * The directories to make in the fresh /tmp, parents first: the path down to
 * each mount below /tmp (bwrap would make them 0700, closed to `--user`),
 * and a TMPDIR below /tmp, world-writable like /tmp, or every mkdtemp fails.
 */
function tmpSkeleton(plan: SandboxPlan, tmpdir: string | undefined): [string, string][] {
  const tmp = tmpdir ? path.resolve(tmpdir) : undefined;
  const dirs = new Set<string>();
  for (const dest of [plan.workspace, ...plan.rw, plan.install, SANDBOX_SOCKET, ...(tmp ? [path.join(tmp, 'x')] : [])]) {
    for (let d = path.dirname(dest); d !== '/tmp' && within(d, '/tmp'); d = path.dirname(d)) dirs.add(d);
  }
  return [...dirs].sort((x, y) => x.length - y.length).map((d) => [d, d === tmp ? '1777' : '0755']);
}

/** The command line (`unshare … bwrap … CMD`) and CMD's environment. Throws on a plan that would leak. */
export function sandboxCommand(plan: SandboxPlan, env: NodeJS.ProcessEnv): SandboxCommand {
  if (plan.command.length === 0) throw new Error('no command to run');
  for (const p of plan.rw) {
    const why = refuseRw(p, plan);
    if (why) throw new Error(why);
  }
  const a: string[] = ['--ro-bind', '/', '/', '--dev', '/dev', ...(plan.user ? [] : ['--proc', '/proc']), '--perms', '1777', '--tmpfs', '/tmp'];
  for (const [dir, perms] of tmpSkeleton(plan, env.TMPDIR)) a.push('--perms', perms, '--dir', dir);
  for (const p of plan.rw) a.push('--bind', p, p);
  if (within(plan.install, '/tmp')) a.push('--ro-bind', plan.install, plan.install);
  // Read-only too: a write there fails (EROFS) instead of vanishing into a throwaway tmpfs.
  for (const p of coverPaths(plan)) a.push('--tmpfs', p, '--remount-ro', p);
  a.push('--bind', plan.agentTree, plan.workspace);
  a.push('--bind', plan.socket, SANDBOX_SOCKET);
  a.push('--chdir', plan.cwd);
  // A new session: CMD cannot reach the terminal's input queue (TIOCSTI) or be
  // hit twice by a signal sent to our process group; `cowfs run` forwards signals.
  a.push('--unshare-pid', '--unshare-ipc', '--new-session', '--die-with-parent');
  if (plan.net === 'none') a.push('--unshare-net');
  const inner: string[] = [];
  if (plan.user) {
    // bwrap keeps root's capabilities for this step, and setpriv drops them with the uid. /proc is
    // mounted here rather than with bwrap's --proc, whose read-only covers inside it (/proc/sys…)
    // make the kernel refuse a fresh procfs to a sandbox nested in this one (Claude Code's, srt):
    // for a user other than root, the modes of /proc/sys already say no.
    const u = plan.user;
    inner.push('sh', '-c', 'mount -t proc -o nosuid,nodev,noexec proc /proc && exec "$@"', 'sh');
    inner.push('setpriv', `--reuid=${u.uid}`, `--regid=${u.gid}`, u.name ? '--init-groups' : '--clear-groups', '--inh-caps=-all', '--no-new-privs', '--');
  } else {
    a.push('--cap-drop', 'ALL');
  }
  const out: NodeJS.ProcessEnv = { ...env, COWFS_AGENT: plan.agent, COWFS_WORKSPACE: plan.workspace, COWFS_SOCKET: SANDBOX_SOCKET };
  delete out.COWFS_STATE_DIR;
  if (plan.user?.name) Object.assign(out, { USER: plan.user.name, LOGNAME: plan.user.name, HOME: plan.user.home });
  return {
    file: 'unshare',
    args: ['--mount', '--propagation', 'private', '--', 'bwrap', ...a, '--', ...inner, ...plan.command],
    env: out,
  };
}

/**
 * Where CMD starts: the same place relative to the workspace (or to the
 * agent's own mount) as `cwd`, else the workspace root (also from inside the
 * state directory, which the sandbox does not show).
 */
export function insideCwd(cwd: string, workspace: string, agentMount: string | null, stateDir: string): string {
  if (within(cwd, stateDir)) return workspace;
  for (const root of [workspace, agentMount]) {
    if (root && within(cwd, root)) return path.join(workspace, path.relative(root, cwd));
  }
  return workspace;
}
