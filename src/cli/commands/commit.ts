import type { Command } from 'commander';
import { agentArg, withDaemon } from '../context.js';
import { emit } from '../output.js';
import type { CascadeReport } from '../../cascade/cascade.js';
import { describeCascade } from '../format-cascade.js';

export function register(program: Command): void {
  program
    .command('commit')
    .description('snapshot an agent\'s working tree as its new head (what its children are based on)')
    .argument('[agent]', 'default: the agent of the mount you are in')
    .requiredOption('-m, --message <msg>', 'what the commit does')
    .action((agent: string | undefined, o: { message: string }, cmd: Command) =>
      withDaemon(cmd, async (client, t, opts) => {
        const name = agentArg(agent, t);
        const r = await client.call<{ commit: number; seq: number; cascade: CascadeReport }>('commit', { agent: name, message: o.message });
        emit(opts, r, () => `committed ${name}: commit ${r.commit} (event ${r.seq})${describeCascade(r.cascade)}`);
      }));
}
