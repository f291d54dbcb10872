import WebSocket from 'ws';
import type { CowEvent } from '../events/types.js';
import type { Response } from '../daemon/protocol.js';
import type { ProgressInfo } from '../transfer/progress.js';
import { CliError } from './output.js';
import type { Target } from './locate.js';

/** What one message may carry (ws's default `maxPayload`); a larger one closes the connection. */
const MAX_MESSAGE_MIB = 100;

/** A connection to the daemon's API. */
export class Client {
  private nextId = 1;
  private readonly waiting = new Map<number, (r: Response) => void>();
  private onEvent: ((ev: CowEvent) => void) | undefined;
  private readonly onProgress = new Map<number, (p: ProgressInfo) => void>();

  /** The connection broke on a message over MAX_MESSAGE_MIB. */
  private tooBig = false;

  private constructor(private readonly ws: WebSocket) {
    // Also keeps an error after the connection was made from being an unhandled 'error' event.
    ws.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') this.tooBig = true;
    });
    ws.on('message', (data) => {
      const msg = JSON.parse(String(data)) as Response | { event: CowEvent } | { progressOf: number; progress: ProgressInfo };
      if ('event' in msg) this.onEvent?.(msg.event);
      else if ('progressOf' in msg) this.onProgress.get(msg.progressOf)?.(msg.progress);
      else this.waiting.get(msg.id)?.(msg);
    });
  }

  static connect(target: Target): Promise<Client> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws+unix://${target.socket}:/`);
      ws.once('open', () => resolve(new Client(ws)));
      ws.once('error', (err: NodeJS.ErrnoException) => {
        const down = err.code === 'ENOENT' || err.code === 'ECONNREFUSED';
        reject(new CliError(down
          ? `the cowfs daemon is not running (no answer on ${target.socket}); start it with: cowfs daemon --detach --workspace WORKSPACE`
          : `cannot reach the cowfs daemon on ${target.socket}: ${err.message}`, 'daemon_down'));
      });
    });
  }

  /** One request; `progress` hears the reports of a long operation until its answer. */
  call<T = unknown>(method: string, params: Record<string, unknown> = {}, progress?: (p: ProgressInfo) => void): Promise<T> {
    const id = this.nextId++;
    if (progress) this.onProgress.set(id, progress);
    return new Promise((resolve, reject) => {
      const onClose = () => reject(this.tooBig
        ? new CliError(`the daemon's answer is larger than ${MAX_MESSAGE_MIB} MiB, more than one message may carry (large binary files?); ask for less: cowfs diff --stat, --name-only, or -- PATH…`, 'too_large')
        : new CliError('the cowfs daemon closed the connection', 'daemon_down'));
      this.ws.once('close', onClose);
      this.waiting.set(id, (r) => {
        this.waiting.delete(id);
        this.onProgress.delete(id);
        this.ws.off('close', onClose);
        if ('error' in r) reject(new CliError(r.error.message, r.error.code));
        else resolve(r.result as T);
      });
      this.ws.send(JSON.stringify({ id, method, params }));
    });
  }

  /** Streams events as they happen until the connection closes. */
  async follow(params: Record<string, unknown>, fn: (ev: CowEvent) => void): Promise<void> {
    this.onEvent = fn;
    await this.call('events.follow', params);
    await new Promise<void>((resolve) => this.ws.once('close', () => resolve()));
  }

  close(): void {
    this.ws.close();
  }
}
