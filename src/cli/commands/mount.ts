import path from 'node:path';
import type { Command } from 'commander';
import type { AgentInfo } from '../../daemon/protocol.js';
import { withDaemon } from '../context.js';
import { emit } from '../output.js';

export function register(program: Command): void {
  program
    .command('mount')
    .description('mount an agent\'s copy-on-write tree (creating the agent if new)')
    .argument('<agent>', 'agent name: [a-z0-9][a-z0-9._-]{0,63}')
    .argument('<mountpoint>', 'an existing directory')
    .option('--parent <agent>', 'base a new agent on this agent\'s head (default: the workspace)')
    .action((agent: string, mountpoint: string, o: { parent?: string }, cmd: Command) =>
      withDaemon(cmd, async (client, _t, opts) => {
        const r = await client.call<AgentInfo & { created: boolean }>('mount', {
          agent, mountpoint: path.resolve(mountpoint), parent: o.parent,
        });
        emit(opts, r, () => `${r.created ? 'created and mounted' : 'mounted'} ${agent} at ${r.mountpoint}`);
      }));

}
