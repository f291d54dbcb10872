import fs from 'node:fs';
import type { Command } from 'commander';
import { withDaemon } from '../context.js';
import { emit } from '../output.js';

export function register(program: Command): void {
  program
    .command('have')
    .description('print the ids of the blobs this store holds, one a line: give it to `cowfs export --have` on the sending machine to leave them out')
    .option('--out <file>', 'write the manifest to a file instead of stdout')
    .action((o: { out?: string }, cmd: Command) =>
      withDaemon(cmd, async (client, _t, opts) => {
        const r = await client.call<{ stateDir: string; count: number; ids: string[] }>('have');
        const text = `# cowfs have: ${r.count} blobs of ${r.stateDir}\n${r.ids.map((id) => `${id}\n`).join('')}`;
        if (o.out) {
          fs.writeFileSync(o.out, text);
          emit(opts, { count: r.count, out: o.out }, () => `${r.count} blob ids written to ${o.out}`);
        } else if (opts.json) {
          emit(opts, r, () => '');
        } else {
          process.stdout.write(text);
        }
      }));
}
