import fs from 'node:fs';
import type { CowEvent } from '../events/types.js';
import type { Cascade } from '../cascade/cascade.js';
import { writeTree } from '../overlay/materialize.js';
import type { Settings } from '../overlay/settings.js';
import { land, LandConflictError } from '../land/land.js';
import { agentDiff } from './agent-diff.js';
import { eventDiff } from './event-diff.js';
import { conflictHighlights, unifiedDiffHighlights } from '../merge/char-diff.js';
import { OverlayError } from '../overlay/registry.js';
import type { Overlay } from '../overlay/overlay.js';
import { ApiError } from './errors.js';
import { BundleError } from '../transfer/bundle-format.js';
import type { MountManager } from './mounts.js';
import { bundleAndGcHandlers } from './bundle-gc-api.js';
import { checkOutside, optStr, str, type Params } from './params.js';
import type { AgentInfo, StatusInfo } from './protocol.js';
import type { ProgressFn } from '../transfer/progress.js';
import type { RunSessions } from './runs.js';

export interface ApiContext {
  overlay: Overlay;
  cascade: Cascade;
  mounts: MountManager;
  runs: RunSessions;
  adapter: string;
  startedAt: number;
}

/** Who sent a request: the agent its connection is limited to (null: the owner's socket), and its connection's end. */
export interface Caller {
  scope: string | null;
  onClose(fn: () => void): void;
}

/** `progress` streams reports of a long operation to the caller. */
export type Handler = (ctx: ApiContext, p: Params, progress?: ProgressFn, caller?: Caller) => Promise<unknown> | unknown;

/** What reaches an agent from its ancestors: their commits, rebases and conflicts (the rest of their events is theirs). */
const REACHED = new Set(['AGENT_COMMIT_CREATED', 'AGENT_REBASED', 'WORKTREE_CONFLICT_DETECTED', 'WORKTREE_CONFLICT_RESOLVED']);

/** Does `cowfs log AGENT` show this event: the agent's own, or what reached it from an ancestor? */
export function reachesAgent(ctx: ApiContext, ev: CowEvent, agent: string): boolean {
  for (let a: string | null = agent, own = true; a !== null; a = ctx.overlay.agent(a).parent, own = false) {
    // Only the current life of a name: one reused after a removal does not show the old one's events.
    if (ev.agent === a) return (own || REACHED.has(ev.type)) && ev.seq >= ctx.overlay.agent(a).createdSeq;
  }
  return false;
}

/**
 * Runs `fn` on the agent, creating it first (based on `parent`) if it is new;
 * a new agent is removed again when `fn` fails. Resolves to whether it was created.
 */
export async function withAgent(ctx: ApiContext, agent: string, parent: string | null, fn: () => Promise<void>): Promise<boolean> {
  const existing = ctx.overlay.registry.find(agent);
  if (existing && parent !== null && existing.parent !== parent) {
    throw new ApiError('conflict', `agent ${agent} exists with parent ${existing.parent ?? '(workspace)'}, not ${parent}`);
  }
  const created = !existing;
  if (created) ctx.overlay.createAgent(agent, parent);
  try {
    await fn();
  } catch (err) {
    if (created) ctx.overlay.removeAgent(agent);
    throw err;
  }
  return created;
}

export function agentInfo(ctx: ApiContext, name: string): AgentInfo {
  const a = ctx.overlay.agent(name);
  const mp = ctx.mounts.mountpointOf(name);
  return {
    name: a.name, parent: a.parent, head: a.head, base: a.base,
    mountpoint: mp ?? a.mountpoint, mounted: mp !== undefined, writeCache: ctx.mounts.writeCacheOf(name) ?? null,
    ...ctx.overlay.usage(name), openFiles: ctx.overlay.tree(name).openCount,
  };
}

/** The daemon's verbs; each answers plain JSON. */
export const handlers: Record<string, Handler> = {
  status(ctx, p) {
    const agent = optStr(p, 'agent');
    const info: StatusInfo = {
      pid: process.pid,
      workspace: ctx.overlay.workspace.root,
      stateDir: ctx.overlay.stateDir,
      adapter: ctx.adapter,
      uptimeMs: Date.now() - ctx.startedAt,
      agents: ctx.overlay.agents().length,
      mounted: ctx.mounts.count,
      lastSeq: ctx.overlay.log.head,
    };
    if (agent) info.agent = agentInfo(ctx, agent);
    return info;
  },

  ls(ctx) {
    return ctx.overlay.agents().map((a) => agentInfo(ctx, a.name));
  },

  async mount(ctx, p) {
    const agent = str(p, 'agent');
    const mountpoint = str(p, 'mountpoint');
    const parent = optStr(p, 'parent') ?? null;
    // A new agent's mountpoint is checked before the agent is made: a typo logs no agent made and removed.
    if (!ctx.overlay.registry.find(agent)) ctx.mounts.checkMountpoint(agent, mountpoint, false);
    const created = await withAgent(ctx, agent, parent, () => ctx.mounts.mount(agent, mountpoint));
    return { ...agentInfo(ctx, agent), created };
  },

  /** `cowfs run`: the agent (created and mounted if needed) and a socket for it alone, until run.end or the caller's connection ends. */
  'run.start'(ctx, p, _progress, caller) {
    if (!caller) throw new ApiError('internal', 'run.start needs its connection');
    const uid = typeof p.uid === 'number' ? p.uid : 0;
    const gid = typeof p.gid === 'number' ? p.gid : 0;
    const rw = Array.isArray(p.rw) ? p.rw.map(String) : [];
    return ctx.runs.start(ctx, { agent: str(p, 'agent'), parent: optStr(p, 'parent') ?? null, uid, gid, rw }, caller);
  },

  'run.end'(ctx, p) {
    return ctx.runs.end(str(p, 'id'), p.startFailed === true);
  },

  async unmount(ctx, p) {
    const agent = str(p, 'agent');
    ctx.overlay.agent(agent);
    if (!ctx.mounts.mountpointOf(agent)) throw new ApiError('bad_request', `agent ${agent} is not mounted`);
    await ctx.mounts.unmount(agent, true);
    return agentInfo(ctx, agent);
  },

  async rm(ctx, p) {
    const agent = str(p, 'agent');
    const recursive = p.recursive === true;
    const doomed = [agent];
    for (let i = 0; i < doomed.length; i++) doomed.push(...ctx.overlay.registry.children(doomed[i]!).map((c) => c.name));
    if (doomed.length > 1 && !recursive) ctx.overlay.removeAgent(agent); // throws the "has children" error
    for (const name of doomed.reverse()) await ctx.mounts.unmount(name, true);
    return { removed: ctx.overlay.removeAgent(agent, recursive) };
  },

  commit(ctx, p) {
    const agent = str(p, 'agent');
    const message = str(p, 'message');
    const c = ctx.overlay.commit(agent, message);
    const cascade = ctx.cascade.afterCommitOf(agent);
    return { agent, commit: c.id, seq: c.seq, message, cascade };
  },

  conflicts(ctx, p) {
    const agent = str(p, 'agent');
    const a = ctx.overlay.agent(agent);
    const text = (id: string | null) => (id === null ? null : ctx.overlay.blobs.get(id).toString('utf8'));
    return Object.values(a.conflicts ?? {}).map((c) => ({
      ...c,
      hunks: c.hunks.map((h) => ({ ...h, chars: conflictHighlights(h) })),
      versions: c.kind === 'binary' ? null : { base: text(c.base), ours: text(c.ours), theirs: text(c.theirs) },
    }));
  },

  resolve(ctx, p) {
    const agent = str(p, 'agent');
    const path = str(p, 'path');
    const how = str(p, 'how');
    if (how !== 'ours' && how !== 'theirs' && how !== 'file') throw new ApiError('bad_request', 'how must be ours, theirs or file');
    const content = how === 'file' ? Buffer.from(str(p, 'content'), 'base64') : undefined;
    return ctx.cascade.resolve(agent, path, how, content);
  },

  show(ctx, p) {
    const seq = p.seq;
    if (typeof seq !== 'number') throw new ApiError('bad_request', 'missing parameter: seq');
    const ev = ctx.overlay.log.get(seq);
    if (!ev) throw new ApiError('not_found', `no event ${seq} (the last is ${ctx.overlay.log.head})`);
    let diff: string;
    try {
      diff = eventDiff(ctx.overlay, ev);
    } catch (err) {
      // gc drops removed agents' content after a while; their events stay in the log.
      if (!ctx.overlay.registry.record(ev.agent) && /missing from the store/.test((err as Error).message)) {
        throw new ApiError('not_found', `event ${seq} of ${ev.agent}: its content is gone (the agent was removed and collected by cowfs gc); \`cowfs log\` still lists it`);
      }
      throw err;
    }
    return { event: ev, diff, highlights: unifiedDiffHighlights(diff) };
  },

  config(ctx, p) {
    const key = optStr(p, 'key');
    const settings = ctx.overlay.settings;
    if (key === undefined) return settings.all();
    if (!(key in settings.all())) throw new ApiError('bad_request', `unknown setting ${key} (known: ${Object.keys(settings.all()).join(', ')})`);
    const value = p.value;
    if (value !== undefined) settings.set(key as keyof Settings, value);
    return { [key]: settings.all()[key as keyof Settings] };
  },

  replay(ctx, p) {
    const agent = str(p, 'agent');
    const out = str(p, 'out');
    const to = typeof p.to === 'number' ? p.to : Infinity;
    ctx.overlay.agent(agent);
    if (Number.isFinite(to) && to > ctx.overlay.log.head) throw new ApiError('bad_request', `no event ${to} yet (the last is ${ctx.overlay.log.head})`);
    checkOutside(ctx, out, '--out', true);
    if (fs.existsSync(out) && fs.readdirSync(out).length > 0) throw new ApiError('bad_request', `--out ${out} is not empty`);
    const files = writeTree(ctx.overlay.replay(agent, to), ctx.overlay.blobs, out);
    return { agent, to: Number.isFinite(to) ? to : ctx.overlay.log.head, out, entries: files };
  },

  diff(ctx, p) {
    const paths = Array.isArray(p.paths) ? p.paths.map(String) : [];
    return agentDiff(ctx.overlay, str(p, 'agent'), { from: typeof p.from === 'number' ? p.from : undefined, paths, patch: p.patch !== false });
  },

  async land(ctx, p, progress) {
    const opts = {
      into: optStr(p, 'into'), workspace: p.workspace === true, dryRun: p.dryRun === true,
      onProgress: (done: number, total: number) => progress?.({ phase: 'writing files', done, total }),
    };
    try {
      return await land(ctx.overlay, ctx.cascade, str(p, 'agent'), opts);
    } catch (err) {
      throw err instanceof LandConflictError ? new ApiError('conflict', err.message) : err;
    }
  },

  undo(ctx, p) {
    const agent = str(p, 'agent');
    return { agent, ...ctx.overlay.undo(agent, typeof p.to === 'number' ? p.to : undefined) };
  },

  log(ctx, p) {
    const agent = optStr(p, 'agent');
    const since = typeof p.since === 'number' ? p.since : 0;
    const events: CowEvent[] = [];
    if (agent) {
      // The agent's own events, and its ancestors' commits and rebases: what reached it from above.
      for (let a: string | null = agent, own = true; a !== null; a = ctx.overlay.agent(a).parent, own = false) {
        // From the agent's current life on: a name reused after a removal does not show the old one's events.
        const from = Math.max(since, ctx.overlay.agent(a).createdSeq);
        for (const ev of ctx.overlay.log.byAgent(a, Infinity, from)) if (own || REACHED.has(ev.type)) events.push(ev);
      }
      events.sort((x, y) => x.seq - y.seq);
    } else {
      for (const ev of ctx.overlay.log.range(since)) events.push(ev);
    }
    return events;
  },

  ...bundleAndGcHandlers,
};

/** Turns whatever a handler threw into an API error with a user-facing message. */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof BundleError) return new ApiError('bad_request', err.message);
  if (err instanceof OverlayError) return new ApiError(/^no agent/.test(err.message) ? 'not_found' : 'bad_request', err.message);
  if (err instanceof Error && /invalid agent name/.test(err.message)) return new ApiError('bad_request', err.message);
  return new ApiError('internal', err instanceof Error ? err.message : String(err));
}
