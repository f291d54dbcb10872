import type { Command } from 'commander';
import type { AgentInfo } from '../../daemon/protocol.js';
import { agentArg, withDaemon } from '../context.js';
import { emit } from '../output.js';

export function register(program: Command): void {
  program
    .command('unmount')
    .alias('umount')
    .description('unmount an agent (its tree is kept; mount it again any time)')
    .argument('[agent]', 'default: the agent of the mount you are in')
    .action((agent: string | undefined, _o: unknown, cmd: Command) =>
      withDaemon(cmd, async (client, t, opts) => {
        const name = agentArg(agent, t);
        const r = await client.call<AgentInfo>('unmount', { agent: name });
        emit(opts, r, () => `unmounted ${name}`);
      }));
}
