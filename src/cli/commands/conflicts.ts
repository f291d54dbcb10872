import type { Command } from 'commander';
import type { ConflictRecord } from '../../events/types.js';
import { splitText, type LineChange } from '../../merge/char-diff.js';
import { agentArg, withDaemon } from '../context.js';
import { inlineDiff } from '../highlight.js';
import { emit } from '../output.js';

type Hunk = ConflictRecord['hunks'][number] & { chars?: { ours: LineChange[]; theirs: LineChange[] } };
type Listed = Omit<ConflictRecord, 'hunks'> & {
  hunks: Hunk[];
  versions: { base: string | null; ours: string | null; theirs: string | null } | null;
};

/** A conflict hunk line by line: the base's lines, then each side's with the characters it changed marked. */
function describeHunk(h: Hunk, color: boolean): string[] {
  const out = [`  @@ line ${h.line}`];
  const lines = { base: splitText(h.base), ours: splitText(h.ours), theirs: splitText(h.theirs) };
  for (const l of lines.base) out.push(`    base   | ${l}`);
  for (const side of ['ours', 'theirs'] as const) {
    lines[side].forEach((l, i) => {
      const c = h.chars?.[side].find((x) => x.line === i);
      const shown = c ? inlineDiff(c.against === 'base' ? lines.base[i]! : lines[c.against][i]!, l, c, color) : l;
      out.push(`    ${side.padEnd(6)} | ${shown}`);
    });
  }
  return out;
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
  if (c.targets || c.kinds) {
    const t = (side: 'base' | 'ours' | 'theirs') => {
      const target = c.targets?.[side] ?? null;
      if (target !== null) return `symlink -> ${target}`;
      return c.kinds?.[side] === 'dir' ? 'a directory' : c[side] !== null ? 'a file' : 'absent';
    };
    out.push(`  base: ${t('base')}; ours (kept): ${t('ours')}; theirs: ${t('theirs')}`);
  }
  for (const h of c.hunks) out.push(...describeHunk(h, color));
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
