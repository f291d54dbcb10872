import type { Command } from 'commander';
import type { CowEvent } from '../../events/types.js';
import { withDaemon } from '../context.js';
import { formatEvent } from '../format-event.js';

export function register(program: Command): void {
  program
    .command('events')
    .description('the events so far, or with --follow every new one as it happens (one JSON object a line with --json)')
    .option('--agent <agent>', 'only this agent\'s events')
    .option('--follow', 'keep streaming new events until interrupted')
    .action((o: { agent?: string; follow?: boolean }, cmd: Command) =>
      withDaemon(cmd, async (client, t, opts) => {
        const agent = o.agent ?? t.agent;
        const print = (ev: CowEvent) => process.stdout.write(`${opts.json ? JSON.stringify(ev) : formatEvent(ev)}\n`);
        if (o.follow) await client.follow({ agent }, print);
        else (await client.call<CowEvent[]>('log', { agent })).forEach(print);
      }));
}
