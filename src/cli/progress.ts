import type { ProgressInfo } from '../transfer/progress.js';
import { formatBytes, type OutputOptions } from './output.js';

/**
 * Shows a long operation's progress on one self-rewriting line of stderr,
 * only on a terminal and never with --json (scripts get the result alone).
 * Returns the reporter and a function that clears the line.
 */
export function progressLine(opts: OutputOptions): { report?: (p: ProgressInfo) => void; done: () => void } {
  if (opts.json || !process.stderr.isTTY) return { done: () => {} };
  let shown = false;
  return {
    report(p) {
      const count = p.total !== undefined ? `${p.done}/${p.total}` : `${p.done}`;
      const bytes = p.bytes !== undefined ? `, ${formatBytes(p.bytes)}` : '';
      process.stderr.write(`\r\x1b[K${p.phase}: ${count}${bytes}`);
      shown = true;
    },
    done() {
      if (shown) process.stderr.write('\r\x1b[K');
    },
  };
}
