/** An error for the user: printed as one line (or JSON with --json), exit code 1. */
export class CliError extends Error {
  constructor(message: string, readonly code = 'error') {
    super(message);
    this.name = 'CliError';
  }
}

/** A commander option parser for an event's sequence number: `abc` is refused (Number() made it NaN, sent as null: "the latest"). */
export function eventNumber(v: string): number {
  if (!/^\d+$/.test(v)) throw new CliError(`not an event number: ${v}`);
  return Number(v);
}

export interface OutputOptions {
  json?: boolean;
}

/** Prints a result: JSON for --json, the human form otherwise. */
export function emit(opts: OutputOptions, result: unknown, human: () => string): void {
  if (opts.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  else {
    const text = human();
    if (text) process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  }
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = -1;
  do { v /= 1024; i++; } while (v >= 1024 && i < units.length - 1);
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

/** Left-aligned columns. */
export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return rows.map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]!))).join('  ')).join('\n');
}
