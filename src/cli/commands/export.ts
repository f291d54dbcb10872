import path from 'node:path';
import type { Command } from 'commander';
import type { ExportResult } from '../../transfer/export.js';
import { agentArg, withDaemon } from '../context.js';
import { emit, formatBytes } from '../output.js';
import { progressLine } from '../progress.js';

export function register(program: Command): void {
  program
    .command('export')
    .description('write an agent\'s lineage (its ancestors\' commits, its own events) and the blobs they use into one bundle file, for `cowfs import` on another machine')
    .argument('[agent]', 'default: the agent of the mount you are in')
    .requiredOption('--out <file>', 'the bundle to write (outside the workspace and every mount)')
    .option('--have <manifest>', 'leave out the blobs listed there (the receiver\'s `cowfs have` output)')
    .action((agent: string | undefined, o: { out: string; have?: string }, cmd: Command) =>
      withDaemon(cmd, async (client, t, opts) => {
        const name = agentArg(agent, t);
        const line = progressLine(opts);
        const r = await client.call<ExportResult>('export', {
          agent: name, out: path.resolve(o.out), have: o.have === undefined ? undefined : path.resolve(o.have),
        }, line.report).finally(line.done);
        emit(opts, r, () => `exported ${r.lineage.join(' → ')} to ${r.out}: ${r.events} events, ${r.included} of ${r.blobs} blobs `
          + `(${formatBytes(r.includedBytes)}${r.skipped ? `; ${r.skipped} the receiver has` : ''}), ${formatBytes(r.bytes)} in ${r.ms} ms`);
      }));
}
