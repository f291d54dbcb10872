import type { Command } from 'commander';
import DiffMatchPatch from 'diff-match-patch';
import type { ConflictRecord } from '../../events/types.js';
import { agentArg, withDaemon } from '../context.js';
import { emit } from '../output.js';

type Listed = ConflictRecord & { versions: { base: string | null; ours: string | null; theirs: string | null } | null };

const dmp = new DiffMatchPatch();

/** The characters that differ between two lines: removed as [-x-], added as {+x+} (color on a terminal). */
export function charDiff(a: string, b: string, color: boolean): string {
  const diffs = dmp.diff_main(a, b);
  dmp.diff_cleanupSemantic(diffs);
  return diffs.map(([op, text]) => {
    if (op === 0) return text;
    if (color) return op < 0 ? `\x1b[31;9m${text}\x1b[0m` : `\x1b[32;1m${text}\x1b[0m`;
    return op < 0 ? `[-${text}-]` : `{+${text}+}`;
  }).join('');
}

function describe(c: Listed, color: boolean): string {
  const origin = c.to === null ? 'the workspace changed on disk' : `parent commit ${c.from ?? 'workspace'} -> ${c.to}`;
  const out = [`${c.path}: ${c.kind} conflict (${origin})`];
  if (c.kind === 'binary') out.push('  binary: ours was kept; `cowfs resolve --theirs` takes the parent\'s');
  if (c.kind === 'delete-modify') out.push(`  ${c.ours === null ? 'deleted here, modified by the parent' : 'modified here, deleted by the parent'}`);
  if (c.kind === 'mode' && c.modes) {
    const m = (v: number | null) => (v === null ? '-' : v.toString(8));
    out.push(`  the content merged; permissions changed on both sides: base ${m(c.modes.base)}, ours ${m(c.modes.ours)} (kept), theirs ${m(c.modes.theirs)}`);
  }
  if (c.targets) {
    const t = (v: string | null, blob: string | null) => (v !== null ? `symlink -> ${v}` : blob !== null ? 'a file' : 'absent');
    out.push(`  base: ${t(c.targets.base, c.base)}; ours (kept): ${t(c.targets.ours, c.ours)}; theirs: ${t(c.targets.theirs, c.theirs)}`);
  }
  for (const h of c.hunks) {
    out.push(`  @@ line ${h.line}`);
    for (const l of h.base.split('\n').filter(Boolean)) out.push(`    base   | ${l}`);
    const ours = h.ours.split('\n').filter(Boolean);
    const theirs = h.theirs.split('\n').filter(Boolean);
    for (let i = 0; i < Math.max(ours.length, theirs.length); i++) {
      // Where both sides changed the same line, show the characters that differ between them.
      if (ours[i] !== undefined && theirs[i] !== undefined) {
        out.push(`    ours   | ${ours[i]}`, `    theirs | ${theirs[i]}`, `    diff   | ${charDiff(ours[i]!, theirs[i]!, color)}`);
      } else if (ours[i] !== undefined) out.push(`    ours   | ${ours[i]}`);
      else out.push(`    theirs | ${theirs[i]}`);
    }
  }
  return out.join('\n');
}

export function register(program: Command): void {
  program
    .command('conflicts')
    .description('list an agent\'s unresolved merge conflicts with the three versions (base, ours, theirs)')
    .argument('[agent]', 'default: the agent of the mount you are in')
    .action((agent: string | undefined, _o: unknown, cmd: Command) =>
      withDaemon(cmd, async (client, t, opts) => {
        const name = agentArg(agent, t);
        const list = await client.call<Listed[]>('conflicts', { agent: name });
        emit(opts, list, () => list.length === 0 ? `${name} has no conflicts`
          : `${list.length} conflicted path(s) in ${name}; resolve with: cowfs resolve ${name} PATH --ours|--theirs|--file F\n\n${
            list.map((c) => describe(c, process.stdout.isTTY === true)).join('\n\n')}`);
      }));
}
