import type { Command } from 'commander';
import type { LandResult } from '../../land/land.js';
import { agentArg, withDaemon } from '../context.js';
import { describeCascade } from '../format-cascade.js';
import { emit } from '../output.js';
import { progressLine } from '../progress.js';

function describe(r: LandResult): string {
  const where = r.into ?? 'the workspace';
  const counts = ['write', 'delete', 'mkdir'].map((a) => [a, r.changed.filter((c) => c.action === a).length] as const)
    .filter(([, n]) => n > 0).map(([a, n]) => `${n} ${a === 'write' ? 'written' : a === 'delete' ? 'deleted' : 'directories made'}`);
  if (r.paths.length === 0) return `nothing to land: ${r.agent} has committed no change since its base${r.uncommitted > 0 ? ` (${r.uncommitted} uncommitted: cowfs commit ${r.agent} first)` : ''}`;
  const lines = [
    r.dryRun
      ? `would land ${r.agent} (commit ${r.commit}) into ${where}: ${r.paths.length} changed path(s), ${counts.join(', ') || 'nothing to write'}`
      : `landed ${r.agent} (commit ${r.commit}) into ${where}${r.parentCommit ? ` as its commit ${r.parentCommit}` : ''}: ${counts.join(', ') || 'nothing to write (already there)'}`,
  ];
  if (r.dryRun) for (const c of r.changed) lines.push(`  ${c.action.padEnd(6)} ${c.path}`);
  if (r.uncommitted > 0) lines.push(`note: ${r.uncommitted} uncommitted change(s) of ${r.agent} were not landed (cowfs commit ${r.agent} first to include them)`);
  return lines.join('\n') + (r.cascade ? describeCascade(r.cascade) : '');
}

export function register(program: Command): void {
  program
    .command('land')
    .description('apply an agent\'s committed changes to its parent agent (a commit there, which cascades) or to the workspace on disk')
    .argument('[agent]', 'default: the agent of the mount you are in')
    .option('--into <parent>', 'the parent agent (the default for an agent with a parent)')
    // `--workspace` alone is read from the global `--workspace [dir]`; `--into-workspace` says the same.
    .option('--into-workspace', 'the workspace on disk (the default for a root agent); also: --workspace')
    .option('--dry-run', 'show what would be written, write nothing')
    .addHelpText('after', '\nEach path is merged three ways with what the target holds now; any conflict refuses the\nwhole landing before anything is written. Into the workspace, a crash finishes or rolls back.\n')
    .action((agent: string | undefined, o: { into?: string; intoWorkspace?: boolean; dryRun?: boolean }, cmd: Command) => {
      if (cmd.optsWithGlobals().workspace === true) {
        o.intoWorkspace = true;
        cmd.parent?.setOptionValue('workspace', undefined);
      }
      return withDaemon(cmd, async (client, t, opts) => {
        const name = agentArg(agent, t);
        const line = progressLine(opts);
        const r = await client.call<LandResult>('land', { agent: name, into: o.into, workspace: o.intoWorkspace === true, dryRun: o.dryRun === true },
          line.report).finally(line.done);
        emit(opts, r, () => describe(r));
      });
    });
}
