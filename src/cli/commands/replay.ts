import path from 'node:path';
import type { Command } from 'commander';
import { agentArg, withDaemon } from '../context.js';
import { emit, eventNumber } from '../output.js';

export function register(program: Command): void {
  program
    .command('replay')
    .description('rebuild an agent\'s tree from the event log alone, as it was at an event, into a plain directory')
    .argument('[agent]', 'default: the agent of the mount you are in')
    .requiredOption('--out <dir>', 'a new or empty directory (outside the workspace and every mount)')
    .option('--to <seq>', 'the event to stop at (default: the latest)', eventNumber)
    .action((agent: string | undefined, o: { out: string; to?: number }, cmd: Command) =>
      withDaemon(cmd, async (client, t, opts) => {
        const name = agentArg(agent, t);
        const r = await client.call<{ to: number; out: string; entries: number }>('replay', {
          agent: name, out: path.resolve(o.out), to: o.to,
        });
        emit(opts, r, () => `replayed ${name} up to event ${r.to}: ${r.entries} entries in ${r.out}`);
      }));
}
