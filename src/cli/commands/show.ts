import type { Command } from 'commander';
import type { CowEvent } from '../../events/types.js';
import { withDaemon } from '../context.js';
import { formatEvent } from '../format-event.js';
import { CliError, emit } from '../output.js';

export function register(program: Command): void {
  program
    .command('show')
    .description('one event with its diff: what it changed in the agent\'s tree')
    .argument('<seq>', 'the event\'s sequence number (see cowfs log)')
    .action((seq: string, _o: unknown, cmd: Command) =>
      withDaemon(cmd, async (client, _t, opts) => {
        if (!/^\d+$/.test(seq)) throw new CliError(`not an event number: ${seq}`);
        const r = await client.call<{ event: CowEvent; diff: string }>('show', { seq: Number(seq) });
        emit(opts, r, () => `${formatEvent(r.event)}\n${r.diff}`);
      }));
}
