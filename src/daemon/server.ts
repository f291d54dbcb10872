import fs from 'node:fs';
import http from 'node:http';
import type { Logger } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import type { CowEvent } from '../events/types.js';
import { handlers, reachesAgent, toApiError, type ApiContext, type Caller } from './api.js';
import { ApiError } from './errors.js';
import { withPayload } from './event-payload.js';
import type { Request, Response } from './protocol.js';
import { authorize, scopeResult } from './scope.js';

/** A subscriber further behind than this is cut off: a slow reader never holds up the filesystem. */
const MAX_BUFFERED = 16 * 1024 * 1024;

/** One unix socket speaking the API; `scope` limits it to one agent (a `cowfs run` sandbox's). */
class Listener {
  readonly http = http.createServer((_req, res) => res.writeHead(426).end('cowfs speaks WebSocket\n'));
  readonly wss = new WebSocketServer({ server: this.http });

  async listen(socketPath: string): Promise<void> {
    fs.rmSync(socketPath, { force: true });
    await new Promise<void>((resolve, reject) => {
      this.http.once('error', reject);
      // Created with a umask that leaves only the owner, so there is no window with a wider mode.
      const old = process.umask(0o177);
      this.http.listen(socketPath, () => {
        process.umask(old);
        resolve();
      });
    });
    fs.chmodSync(socketPath, 0o600);
  }

  async close(): Promise<void> {
    for (const ws of this.wss.clients) ws.terminate();
    await new Promise<void>((resolve) => this.wss.close(() => this.http.close(() => resolve())));
  }
}

/** The WebSocket API on a unix socket, mode 0600, and on the sockets of `cowfs run` sandboxes. */
export class ApiServer {
  private readonly main = new Listener();
  private readonly scoped = new Set<Listener>();

  constructor(private readonly ctx: ApiContext, private readonly log: Logger) {
    this.main.wss.on('connection', (ws) => this.serve(ws, null));
  }

  listen(socketPath: string): Promise<void> {
    return this.main.listen(socketPath);
  }

  /** Serves the API for `agent` alone on `socketPath`; resolves to what closes it. */
  async listenScoped(socketPath: string, agent: string): Promise<() => Promise<void>> {
    const l = new Listener();
    l.wss.on('connection', (ws) => this.serve(ws, agent));
    await l.listen(socketPath);
    this.scoped.add(l);
    return async () => {
      this.scoped.delete(l);
      await l.close();
    };
  }

  async close(): Promise<void> {
    for (const l of [...this.scoped]) await l.close();
    await this.main.close();
  }

  private serve(ws: WebSocket, scope: string | null): void {
    let unsubscribe: (() => void) | undefined;
    const caller: Caller = { scope, onClose: (fn) => ws.once('close', fn) };
    ws.on('close', () => unsubscribe?.());
    ws.on('message', async (data) => {
      let req: Request;
      try {
        req = JSON.parse(String(data)) as Request;
      } catch {
        ws.send(JSON.stringify({ id: 0, error: { code: 'bad_request', message: 'malformed request' } }));
        return;
      }
      let res: Response;
      try {
        const params = authorize(scope, req.method, req.params ?? {}, (seq) => this.canSee(scope, seq));
        if (req.method === 'events.follow') {
          unsubscribe?.();
          unsubscribe = this.follow(ws, typeof params.agent === 'string' ? params.agent : undefined);
          res = { id: req.id, result: { following: true, seq: this.ctx.overlay.log.head } };
        } else {
          const handler = handlers[req.method];
          if (!handler) throw new ApiError('bad_request', `unknown method ${req.method}`);
          // No `id` on a progress message: a client that does not know them takes none for the answer.
          const progress = (info: unknown) => ws.send(JSON.stringify({ progressOf: req.id, progress: info }));
          // Every answer sees what was written before it was asked, closed or not (Overlay.settleAll):
          // the agent it names, or every agent.
          const named = typeof params.agent === 'string' ? params.agent : undefined;
          this.ctx.overlay.settleAll((agent, err) => this.log.error({ agent, err }, 'settling open files failed'), named);
          let result: unknown;
          try {
            result = await handler(this.ctx, params, progress, caller);
          } finally {
            // What the caller runs next must see what this request changed (a commit's cascade, an
            // undo), also when it failed part way.
            await this.ctx.mounts.notified();
          }
          res = { id: req.id, result: scopeResult(scope, req.method, result) };
        }
      } catch (err) {
        const e = toApiError(err);
        if (e.code === 'internal') this.log.error({ method: req.method, err }, 'request failed');
        res = { id: req.id, error: { code: e.code, message: e.message } };
      }
      ws.send(JSON.stringify(res));
    });
  }

  /** May a client limited to `scope` see event `seq`? One that does not exist is left to the handler's "no event". */
  private canSee(scope: string | null, seq: number): boolean {
    const ev = this.ctx.overlay.log.get(seq);
    return scope === null || ev === undefined || reachesAgent(this.ctx, ev, scope);
  }

  /**
   * Streams events to one subscriber. Events are published inside the
   * filesystem operation that made them, so they are only queued there;
   * their payloads are built and sent after the operation has answered.
   */
  private follow(ws: WebSocket, agent: string | undefined): () => void {
    let queue: CowEvent[] = [];
    const flush = () => {
      const evs = queue;
      queue = [];
      for (const ev of evs) {
        if (ws.readyState !== ws.OPEN) return;
        if (ws.bufferedAmount > MAX_BUFFERED) {
          this.log.warn('event subscriber too slow, disconnecting it');
          ws.close(1013, 'too slow: events were dropped');
          return;
        }
        ws.send(JSON.stringify({ event: withPayload(this.ctx.overlay, ev) }));
      }
    };
    return this.ctx.overlay.log.subscribe((ev: CowEvent) => {
      if (agent && ev.agent !== agent) return;
      if (queue.push(ev) === 1) setImmediate(flush);
    });
  }
}
