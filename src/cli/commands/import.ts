import path from 'node:path';
import type { Command } from 'commander';
import type { ImportResult } from '../../transfer/import.js';
import { withDaemon } from '../context.js';
import { emit, formatBytes } from '../output.js';
import { progressLine } from '../progress.js';

export function register(program: Command): void {
  program
    .command('import')
    .description('create an agent (and its ancestors) from a bundle written by `cowfs export`; a corrupt or cut bundle is refused and nothing is imported')
    .argument('<bundle>', 'the bundle file')
    .option('--as <name>', 'the agent\'s name here (default: its name in the bundle)')
    .option('--parent <agent>', 'put it on this existing agent instead of bringing its ancestors')
    .option('--force', 'import although this workspace differs from the sender\'s where the agent\'s lineage changed it')
    .action((bundle: string, o: { as?: string; parent?: string; force?: boolean }, cmd: Command) =>
      withDaemon(cmd, async (client, _t, opts) => {
        const line = progressLine(opts);
        const r = await client.call<ImportResult>('import', {
          file: path.resolve(bundle), as: o.as, parent: o.parent, force: o.force === true,
        }, line.report).finally(line.done);
        for (const w of r.warnings) if (!opts.json) process.stderr.write(`cowfs: warning: ${w}\n`);
        emit(opts, r, () => `imported ${r.agent} (created ${r.created.join(', ')}): ${r.events} events, ${r.received} blobs received `
          + `(${formatBytes(r.receivedBytes)}), ${r.alreadyHere} already here, in ${r.ms} ms; mount it with: cowfs mount ${r.agent} DIR`);
      }));
}
