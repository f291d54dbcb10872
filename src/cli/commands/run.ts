import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import type { CascadeReport } from '../../cascade/cascade.js';
import type { RunSession } from '../../daemon/protocol.js';
import { insideCwd, sandboxCommand, type SandboxUser } from '../../sandbox/bwrap.js';
import { packageRoot } from '../../package-root.js';
import { runSandbox } from '../../sandbox/process.js';
import { lookupUser } from '../../sandbox/users.js';
import { withDaemon } from '../context.js';
import { describeCascade } from '../format-cascade.js';
import { CliError } from '../output.js';

interface RunOpts {
  parent?: string;
  rw: string[];
  net: string;
  user?: string;
  commitOnExit?: boolean;
  message?: string;
}

const EXAMPLES = `
Examples:
  cowfs run fix-auth -- claude
  cowfs run fix-auth --rw ~/.claude --rw ~/.claude.json -- claude --dangerously-skip-permissions
  cowfs run fix-auth --commit-on-exit -m "fix the token refresh" -- claude -p "fix the failing auth test"
  cowfs run tests --net none --user builder -- npm test

stdin, stdout and stderr are the command's; cowfs's own messages go to stderr
(with --json, one JSON object at the end). The exit status is the command's
(128+N when it was killed by signal N).`;

/** A directory on PATH holding an executable `name`? */
function onPath(name: string): boolean {
  return (process.env.PATH ?? '').split(':').some((d) => {
    try {
      fs.accessSync(path.join(d || '.', name), fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** `--rw` paths as absolute real paths (a symlinked ~/.claude opens its target); each must exist. */
function rwPaths(given: string[]): string[] {
  return given.map((p) => {
    try {
      return fs.realpathSync(path.resolve(p));
    } catch {
      throw new CliError(`--rw ${p}: no such file or directory (create it first)`);
    }
  });
}

function checkOptions(o: RunOpts): SandboxUser | undefined {
  if (o.net !== 'host' && o.net !== 'none') throw new CliError(`--net ${o.net}: use host (the default) or none`);
  if (o.commitOnExit && !o.message) throw new CliError('--commit-on-exit needs a commit message: -m MSG');
  if (o.message && !o.commitOnExit) throw new CliError('-m is the message of --commit-on-exit; add --commit-on-exit');
  if (!onPath('bwrap')) throw new CliError('bubblewrap (bwrap) is not installed: run scripts/setup.sh or apt-get install bubblewrap');
  if (!onPath('unshare')) throw new CliError('unshare (util-linux) is not installed');
  if (o.user === undefined) return undefined;
  let user: SandboxUser;
  try {
    user = lookupUser(o.user);
  } catch (err) {
    throw new CliError((err as Error).message);
  }
  // setpriv to uid 0 would keep root's capabilities: root runs only without --user, with none.
  if (user.uid === 0) throw new CliError(`--user ${o.user} is root; leave out --user to run as root (without capabilities)`);
  return user;
}

export function register(program: Command): void {
  program
    .command('run')
    .description('run a command (Claude Code, a shell, any program) in a sandbox where the workspace\'s own path shows the agent\'s tree, creating and mounting the agent if needed')
    .argument('<agent>', 'agent name: [a-z0-9][a-z0-9._-]{0,63}')
    .argument('<command...>', 'the command and its arguments, after --')
    .option('--parent <agent>', 'base a new agent on this agent\'s head (default: the workspace)')
    .option('--rw <path>', 'open this path for writing, e.g. a shared cache or ~/.claude (repeatable)', (v: string, acc: string[]) => [...acc, v], [])
    .option('--net <mode>', 'host: the network as it is; none: no network', 'host')
    .option('--user <user>', 'run the command as this user (name or uid) instead of root')
    .option('--commit-on-exit', 'commit the agent when the command exits 0 (needs -m)')
    .option('-m, --message <msg>', 'the commit message for --commit-on-exit')
    .addHelpText('after', EXAMPLES)
    .action((agent: string, command: string[], o: RunOpts, cmd: Command) => {
      const user = checkOptions(o);
      const rw = rwPaths(o.rw);
      return withDaemon(cmd, async (client, _t, opts) => {
        const s = await client.call<RunSession>('run.start', { agent, parent: o.parent, uid: user?.uid ?? 0, gid: user?.gid ?? 0, rw });
        const say = (line: string) => { if (!opts.json) process.stderr.write(`cowfs: ${line}\n`); };
        let code: number;
        try {
          const sandbox = sandboxCommand({
            agent, workspace: s.workspace, agentTree: s.mountpoint, stateDir: s.stateDir, hide: s.mountpoints, rw,
            net: o.net as 'host' | 'none', cwd: insideCwd(process.cwd(), s.workspace, s.userMountpoint, s.stateDir),
            socket: s.socket, install: packageRoot(), user, command,
          }, process.env);
          if (s.created) say(`created agent ${agent} (based on ${o.parent ?? 'the workspace'})`);
          code = (await runSandbox(sandbox)).code;
        } catch (err) {
          // The sandbox never started, so nothing was written: an agent this run created goes again.
          const end = await client.call<{ removed: boolean }>('run.end', { id: s.id, startFailed: true });
          throw new CliError(`${(err as Error).message}${end.removed ? ` (agent ${agent}, created for this run, was removed again)` : ''}`);
        }
        let commit: { commit: number; cascade: CascadeReport } | undefined;
        let commitError: string | undefined;
        if (o.commitOnExit && code === 0) {
          try {
            commit = await client.call('commit', { agent, message: o.message });
            say(`committed ${agent}: commit ${commit!.commit}${describeCascade(commit!.cascade)}`);
          } catch (err) {
            commitError = (err as Error).message;
          }
        } else if (o.commitOnExit) {
          say(`not committed: the command exited with status ${code}`);
        }
        await client.call('run.end', { id: s.id });
        if (opts.json) process.stderr.write(`${JSON.stringify({ agent, created: s.created, exitCode: code, commit: commit ?? null })}\n`);
        if (commitError) throw new CliError(`the command succeeded but the commit failed: ${commitError}`);
        process.exitCode = code;
      });
    });
}
