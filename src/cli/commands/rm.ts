import type { Command } from 'commander';
import { withDaemon } from '../context.js';
import { emit } from '../output.js';

export function register(program: Command): void {
  program
    .command('rm')
    .description('remove an agent (unmounting it first); its events stay in the log')
    .argument('<agent>')
    .option('-r, --recursive', 'also remove its descendants')
    .action((agent: string, o: { recursive?: boolean }, cmd: Command) =>
      withDaemon(cmd, async (client, _t, opts) => {
        const r = await client.call<{ removed: string[] }>('rm', { agent, recursive: o.recursive === true });
        emit(opts, r, () => `removed ${r.removed.join(', ')}`);
      }));
}
