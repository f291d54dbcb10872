import type { Command } from 'commander';
import type { AgentDiff } from '../../daemon/agent-diff.js';
import type { FileDiff } from '../../daemon/git-patch.js';
import { agentArg, withDaemon } from '../context.js';
import { CliError } from '../output.js';

const COLORS: [RegExp, string][] = [
  [/^(diff --git|index |new file|deleted file|old mode|new mode|similarity|rename |--- |\+\+\+ )/, '\x1b[1m'],
  [/^@@/, '\x1b[36m'],
  [/^\+/, '\x1b[32m'],
  [/^-/, '\x1b[31m'],
];

/** git's colors for a patch on a terminal. */
function colored(patch: string): string {
  return patch.split('\n').map((line) => {
    const c = COLORS.find(([re]) => re.test(line));
    return c ? `${c[1]}${line}\x1b[0m` : line;
  }).join('\n');
}

/** `git diff --stat`: one line per file and a summary. */
function stat(files: FileDiff[]): string {
  if (files.length === 0) return '';
  const names = files.map((f) => (f.oldPath ? `${f.oldPath} => ${f.path}` : f.path));
  const width = Math.max(...names.map((n) => n.length));
  const most = Math.max(1, ...files.map((f) => f.added + f.removed));
  const scale = (n: number) => (most > 50 ? Math.ceil((n * 50) / most) : n);
  const lines = files.map((f, i) => {
    const what = f.binary ? 'Bin' : `${f.added + f.removed} ${'+'.repeat(scale(f.added))}${'-'.repeat(scale(f.removed))}`;
    return ` ${names[i]!.padEnd(width)} | ${what}`;
  });
  const ins = files.reduce((n, f) => n + f.added, 0);
  const del = files.reduce((n, f) => n + f.removed, 0);
  lines.push(` ${files.length} file${files.length === 1 ? '' : 's'} changed, ${ins} insertion${ins === 1 ? '' : 's'}(+), ${del} deletion${del === 1 ? '' : 's'}(-)`);
  return `${lines.join('\n')}\n`;
}

export function register(program: Command): void {
  program
    .command('diff')
    .description('an agent\'s changes as a patch that `git apply` accepts: against its base, or since an event')
    .argument('[agent]', 'default: the agent of the mount you are in')
    .argument('[paths...]', 'after --: only these paths (relative to the tree\'s root)')
    .option('--from <seq>', 'against the agent\'s own tree at this event (see cowfs log)')
    .option('--base', 'against the agent\'s base: its parent\'s commit, or the workspace on disk (the default)')
    .option('--stat', 'a summary per file instead of the patch')
    .option('--name-only', 'only the names of the changed files')
    .option('--no-color', 'no colors, also on a terminal')
    .addHelpText('after', '\nExamples:\n  cowfs diff fix-auth | git apply        # in a copy of the workspace\n  cowfs diff fix-auth --from 42 -- src/\n')
    .action((given: string | undefined, _paths: string[], o: { from?: string; base?: boolean; stat?: boolean; nameOnly?: boolean; color: boolean }, cmd: Command) =>
      withDaemon(cmd, async (client, t, opts) => {
        // Operands after `--` are paths, also when AGENT is left out (inside a mount).
        const dd = process.argv.indexOf('--');
        const operands = [given, ..._paths].filter((x): x is string => x !== undefined);
        const before = dd < 0 ? operands.length : Math.max(0, operands.length - (process.argv.length - dd - 1));
        if (before > 1) throw new CliError(`unexpected argument ${operands[1]}: put paths after --`);
        const paths = operands.slice(before);
        if (o.from !== undefined && o.base) throw new CliError('give either --from SEQ or --base, not both');
        if (o.from !== undefined && !/^\d+$/.test(o.from)) throw new CliError(`not an event number: ${o.from}`);
        const name = agentArg(operands[0] !== undefined && before === 1 ? operands[0] : undefined, t);
        const r = await client.call<AgentDiff>('diff', {
          agent: name, from: o.from === undefined ? undefined : Number(o.from), paths, patch: !o.stat && !o.nameOnly,
        });
        if (opts.json) {
          process.stdout.write(`${JSON.stringify({ ...r, patch: Buffer.from(r.patch, 'latin1').toString('utf8') }, null, 2)}\n`);
        } else if (o.nameOnly) {
          process.stdout.write(r.files.map((f) => `${f.path}\n`).join(''));
        } else if (o.stat) {
          process.stdout.write(stat(r.files));
        } else {
          const bytes = Buffer.from(r.patch, 'latin1');
          process.stdout.write(o.color && process.stdout.isTTY ? colored(bytes.toString('utf8')) : bytes);
        }
      }));
}
