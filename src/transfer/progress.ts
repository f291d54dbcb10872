import { setImmediate as yieldToLoop } from 'node:timers/promises';

/** What a long operation reports as it goes (streamed to the CLI, which shows it on a terminal). */
export interface ProgressInfo {
  phase: string;
  done: number;
  total?: number;
  bytes?: number;
}

export type ProgressFn = (p: ProgressInfo) => void;

/**
 * Reports progress at most every 200 ms, and lets the daemon's other work
 * (FUSE requests of the mounts) run between steps of a long operation.
 */
export class Pacer {
  private lastReport = 0;
  private lastYield = Date.now();

  constructor(private readonly report?: ProgressFn) {}

  async step(p: ProgressInfo): Promise<void> {
    const now = Date.now();
    if (this.report && now - this.lastReport >= 200) {
      this.lastReport = now;
      this.report(p);
    }
    if (now - this.lastYield >= 20) {
      await yieldToLoop();
      this.lastYield = Date.now();
    }
  }

  /** A new phase begins: always reported, then the loop gets a turn. */
  async phase(p: ProgressInfo): Promise<void> {
    this.lastReport = Date.now();
    this.report?.(p);
    await yieldToLoop();
    this.lastYield = Date.now();
  }

  final(p: ProgressInfo): void {
    this.report?.(p);
  }
}
