import { EventEmitter } from 'node:events';
import type { Store } from '../store/env.js';
import type { CowEvent, EventBody } from './types.js';

/**
 * The append-only event log: one total order (global sequence numbers),
 * readable by sequence or by agent, and observable as it grows.
 * Appends are meant to run inside the store transaction of the change they
 * describe, so an event is durable exactly when its change is.
 */
export class EventLog {
  private nextSeq: number;
  private readonly emitter = new EventEmitter();
  private pending: CowEvent[] = [];

  constructor(private readonly store: Store) {
    const [last] = store.dbs.events.getKeys({ reverse: true, limit: 1 });
    this.nextSeq = (last ?? 0) + 1;
    this.emitter.setMaxListeners(0);
  }

  /** The sequence number the next event will get. */
  get head(): number {
    return this.nextSeq - 1;
  }

  append(agent: string, body: EventBody): CowEvent {
    const ev = { ...body, seq: this.nextSeq++, agent, time: Date.now() } as CowEvent;
    this.store.dbs.events.putSync(ev.seq, ev);
    this.store.dbs.agentEvents.putSync([agent, ev.seq], null);
    this.pending.push(ev);
    return ev;
  }

  /** Tells subscribers about the events appended since the last call (after their transaction committed). */
  publish(): void {
    // A subscriber may append and publish in turn (a mount releasing a file logs its put): the outer
    // call delivers those after the events before them, so every subscriber sees them in order.
    if (this.publishing) return;
    this.publishing = true;
    try {
      // Batch by batch: a subscriber's rolled-back transaction (discardPending) sees only its own events.
      while (this.pending.length > 0) {
        const evs = this.pending;
        this.pending = [];
        for (const ev of evs) this.emitter.emit('event', ev);
      }
    } finally {
      this.publishing = false;
    }
  }
  private publishing = false;

  /** Forgets events appended by a transaction that was rolled back. */
  discardPending(): void {
    if (this.pending.length) this.nextSeq = this.pending[0]!.seq;
    this.pending = [];
  }

  get(seq: number): CowEvent | undefined {
    return this.store.dbs.events.get(seq);
  }

  /** Events with from ≤ seq ≤ to, in order. */
  *range(from = 1, to = Infinity): Iterable<CowEvent> {
    for (const { value } of this.store.dbs.events.getRange({ start: from, end: to + 1 })) yield value;
  }

  /** One agent's events with from ≤ seq ≤ to, in order. */
  *byAgent(agent: string, to = Infinity, from = 0): Iterable<CowEvent> {
    for (const key of this.store.dbs.agentEvents.getKeys({ start: [agent, from], end: [agent, to + 1] })) {
      const ev = this.get(key[1]);
      if (ev) yield ev;
    }
  }

  subscribe(fn: (ev: CowEvent) => void): () => void {
    this.emitter.on('event', fn);
    return () => this.emitter.off('event', fn);
  }
}
