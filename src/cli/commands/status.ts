import type { Command } from 'commander';
import type { StatusInfo } from '../../daemon/protocol.js';
import { withDaemon } from '../context.js';
import { emit, formatBytes } from '../output.js';

export function register(program: Command): void {
  program
    .command('status')
    .description('the daemon (workspace, FUSE adapter, agents, mounts) and, inside a mount, its agent')
    .argument('[agent]', 'default: the agent of the mount you are in, if any')
    .action((agent: string | undefined, _o: unknown, cmd: Command) =>
      withDaemon(cmd, async (client, t, opts) => {
        const s = await client.call<StatusInfo>('status', { agent: agent ?? t.agent });
        emit(opts, s, () => [
          `daemon     pid ${s.pid}, up ${Math.round(s.uptimeMs / 1000)} s, FUSE adapter ${s.adapter}`,
          `workspace  ${s.workspace}`,
          `state      ${s.stateDir}`,
          `agents     ${s.agents} (${s.mounted} mounted), last event ${s.lastSeq}`,
          ...(s.agent ? [
            `agent      ${s.agent.name} (parent ${s.agent.parent ?? 'the workspace'}), head commit ${s.agent.head}`,
            `           ${s.agent.mounted ? `mounted at ${s.agent.mountpoint}` : 'not mounted'}, ${s.agent.changed} paths changed, ${formatBytes(s.agent.bytes)} stored, ${s.agent.openFiles} files open`,
          ] : []),
        ].join('\n'));
      }));
}
