import type { Command } from 'commander';
import { agentArg, withDaemon } from '../context.js';
import { CliError, emit } from '../output.js';

export function register(program: Command): void {
  program
    .command('undo')
    .description('put an agent\'s working tree back to what it was at an event, as new events (an undo can be undone)')
    .argument('[agent]', 'default: the agent of the mount you are in')
    .option('--to <seq>', 'the event to go back to (default: just before the agent\'s last operation; after an undo, a redo)')
    .action((agent: string | undefined, o: { to?: string }, cmd: Command) =>
      withDaemon(cmd, async (client, t, opts) => {
        const name = agentArg(agent, t);
        if (o.to !== undefined && !/^\d+$/.test(o.to)) throw new CliError(`not an event number: ${o.to}`);
        const r = await client.call<{ to: number; ops: number; seq: number | null }>('undo', { agent: name, to: o.to === undefined ? undefined : Number(o.to) });
        emit(opts, r, () => (r.seq === null
          ? `${name} is already as it was at event ${r.to}: nothing to undo`
          : `${name} is back to event ${r.to} (${r.ops} operation(s), event ${r.seq}); cowfs undo ${name} again to redo`));
      }));
}
