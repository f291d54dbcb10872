import type { Command } from 'commander';
import type { AgentInfo } from '../../daemon/protocol.js';
import { withDaemon } from '../context.js';
import { emit, formatBytes, table } from '../output.js';

/** Agents as a tree: children under their parent, indented. */
function treeOrder(agents: AgentInfo[]): [AgentInfo, number][] {
  const out: [AgentInfo, number][] = [];
  const visit = (parent: string | null, depth: number) => {
    for (const a of agents.filter((x) => x.parent === parent).sort((x, y) => x.name.localeCompare(y.name))) {
      out.push([a, depth]);
      visit(a.name, depth + 1);
    }
  };
  visit(null, 0);
  return out;
}

export function register(program: Command): void {
  program
    .command('ls')
    .description('list the agents as a tree: parent, mountpoint, state, files changed, bytes stored')
    .action((_o: unknown, cmd: Command) =>
      withDaemon(cmd, async (client, _t, opts) => {
        const agents = await client.call<AgentInfo[]>('ls');
        emit(opts, agents, () => agents.length === 0 ? 'no agents (create one with: cowfs mount AGENT DIR)' : table([
          ['AGENT', 'PARENT', 'STATE', 'CHANGED', 'STORED', 'MOUNTPOINT'],
          ...treeOrder(agents).map(([a, depth]) => [
            `${'  '.repeat(depth)}${a.name}`, a.parent ?? '(workspace)', a.mounted ? 'mounted' : 'unmounted',
            String(a.changed), formatBytes(a.bytes), a.mountpoint ?? '-',
          ]),
        ]));
      }));
}
