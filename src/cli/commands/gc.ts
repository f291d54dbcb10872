import type { Command } from 'commander';
import type { GcResult } from '../../overlay/gc.js';
import { withDaemon } from '../context.js';
import { emit, formatBytes } from '../output.js';
import { progressLine } from '../progress.js';

export function register(program: Command): void {
  program
    .command('gc')
    .description('delete blobs no agent needs any more, and agents removed long ago (`cowfs config keepRemovedHours`, 168 by default); safe while agents write')
    .option('--dry-run', 'report what would be freed, delete nothing')
    .option('--keep-removed <hours>', 'drop agents removed more than this many hours ago (default: the keepRemovedHours setting)', (v) => Number(v))
    .action((o: { dryRun?: boolean; keepRemoved?: number }, cmd: Command) =>
      withDaemon(cmd, async (client, _t, opts) => {
        const line = progressLine(opts);
        const r = await client.call<GcResult>('gc', { dryRun: o.dryRun === true, keepRemovedHours: o.keepRemoved }, line.report).finally(line.done);
        const verb = r.dryRun ? 'would free' : 'freed';
        emit(opts, r, () => [
          `${verb} ${r.freedBlobs} of ${r.blobs} blobs (${formatBytes(r.freedBytes)})`
            + (r.strayFiles ? ` and ${r.strayFiles} stray files (${formatBytes(r.strayBytes)})` : '') + ` in ${r.ms} ms`,
          r.droppedAgents.length ? `${r.dryRun ? 'would drop' : 'dropped'} removed agents: ${r.droppedAgents.join(', ')}` : '',
        ].filter(Boolean).join('\n'));
      }));
}
