import type { Command } from 'commander';
import type { CowEvent } from '../../events/types.js';
import { withDaemon } from '../context.js';
import { formatEvent } from '../format-event.js';
import { emit, eventNumber } from '../output.js';

export function register(program: Command): void {
  program
    .command('log')
    .description('the event log in order: an agent\'s own events and the commits and rebases of its ancestors that reached it, or every event')
    .argument('[agent]', 'default: the agent of the mount you are in, else every agent')
    .option('--since <seq>', 'only events from this sequence number on', eventNumber)
    .action((agent: string | undefined, o: { since?: number }, cmd: Command) =>
      withDaemon(cmd, async (client, t, opts) => {
        const events = await client.call<CowEvent[]>('log', { agent: agent ?? t.agent, since: o.since });
        emit(opts, events, () => events.map(formatEvent).join('\n'));
      }));
}
