import type { Command } from 'commander';
import { withDaemon } from '../context.js';
import { emit } from '../output.js';

export function register(program: Command): void {
  program
    .command('config')
    .description('show or change a workspace setting: refine (character-level merge of conflicting hunks, off by default), '
      + 'keepRemovedHours (how long gc keeps removed agents), writeCache (the kernel\'s writeback cache in mounts made from now on, off by default)')
    .argument('[key]', 'a setting; none: list them')
    .argument('[value]', 'the new value (on/off)')
    .action((key: string | undefined, value: string | undefined, _o: unknown, cmd: Command) =>
      withDaemon(cmd, async (client, _t, opts) => {
        const r = await client.call<Record<string, unknown>>('config', { key, value });
        emit(opts, r, () => Object.entries(r).map(([k, v]) => `${k} = ${v === true ? 'on' : v === false ? 'off' : v}`).join('\n'));
      }));
}
