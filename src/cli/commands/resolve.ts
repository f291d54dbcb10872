import fs from 'node:fs';
import type { Command } from 'commander';
import type { CascadeReport } from '../../cascade/cascade.js';
import { agentArg, withDaemon } from '../context.js';
import { CliError, emit } from '../output.js';
import { describeCascade } from '../format-cascade.js';

export function register(program: Command): void {
  program
    .command('resolve')
    .description('resolve a conflicted path (ours, theirs, or a file\'s content); the cascade resumes when none is left')
    // Both optional: commander fills [agent] first, so `cowfs resolve PATH` inside a mount gives one operand.
    .argument('[agent]', 'default: the agent of the mount you are in')
    .argument('[path]', 'the conflicted path, relative to the tree')
    .option('--ours', 'keep the agent\'s version')
    .option('--theirs', 'take the parent\'s version')
    .option('--file <file>', 'take this file\'s content')
    .action((first: string | undefined, second: string | undefined, o: { ours?: boolean; theirs?: boolean; file?: string }, cmd: Command) =>
      withDaemon(cmd, async (client, t, opts) => {
        const [agent, path] = second === undefined ? [undefined, first] : [first, second];
        if (path === undefined) throw new CliError('no PATH given: cowfs resolve [AGENT] PATH --ours|--theirs|--file F');
        const name = agentArg(agent, t);
        const chosen = [o.ours && 'ours', o.theirs && 'theirs', o.file && 'file'].filter(Boolean);
        if (chosen.length !== 1) throw new CliError('give exactly one of --ours, --theirs, --file F');
        const content = o.file ? fs.readFileSync(o.file).toString('base64') : undefined;
        const r = await client.call<CascadeReport>('resolve', { agent: name, path, how: chosen[0], content });
        emit(opts, r, () => `resolved ${path} in ${name}${describeCascade(r)}`);
      }));
}
