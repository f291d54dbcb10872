import type { Command } from 'commander';
import type { CowEvent } from '../../events/types.js';
import type { CharRange } from '../../merge/char-diff.js';
import { withDaemon } from '../context.js';
import { formatEvent } from '../format-event.js';
import { markRanges } from '../highlight.js';
import { CliError, emit } from '../output.js';

interface Shown {
  event: CowEvent;
  diff: string;
  /** per line of the diff (index in diff.split('\n')): the characters that differ from its partner line */
  highlights: { line: number; ranges: CharRange[] }[];
}

/**
 * The unified diff with the characters that differ inside each changed line
 * marked; on a terminal, removed and added lines in red and green too.
 */
export function highlightDiff(r: Shown, color: boolean): string {
  const ranges = new Map(r.highlights.map((h) => [h.line, h.ranges]));
  return r.diff.split('\n').map((line, i) => {
    const kind = line.startsWith('-') && !line.startsWith('--- ') ? 'removed' : line.startsWith('+') && !line.startsWith('+++ ') ? 'added' : undefined;
    const marks = ranges.get(i);
    if (marks) return markRanges(line, marks, kind!, color);
    return kind && color ? markRanges(line, [], kind, color) : line;
  }).join('\n');
}

export function register(program: Command): void {
  program
    .command('show')
    .description('one event with its diff: what it changed in the agent\'s tree (the characters that differ inside a changed line marked)')
    .argument('<seq>', 'the event\'s sequence number (see cowfs log)')
    .action((seq: string, _o: unknown, cmd: Command) =>
      withDaemon(cmd, async (client, _t, opts) => {
        if (!/^\d+$/.test(seq)) throw new CliError(`not an event number: ${seq}`);
        const r = await client.call<Shown>('show', { seq: Number(seq) });
        emit(opts, r, () => `${formatEvent(r.event)}\n${highlightDiff(r, process.stdout.isTTY === true)}`);
      }));
}
