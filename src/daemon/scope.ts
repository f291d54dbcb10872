/**
 * What a client limited to one agent may do: the CLI inside a `cowfs run`
 * sandbox connects to a socket that the daemon serves for that agent alone,
 * and every request on it passes through here, on the daemon's side. The
 * agent's own status, commits, conflicts, resolutions, log, events, diff
 * and undo are allowed; anything naming another agent, and every verb that
 * creates, mounts, removes, lands, moves or writes outside the agent
 * (land, export, import, gc…), is refused. Unknown methods
 * are refused too: a new verb is closed to sandboxes until listed here.
 */
import { ApiError } from './errors.js';
import type { AgentInfo } from './protocol.js';

type Params = Record<string, unknown>;

/** Methods about one agent: `agent` defaults to the scope's and must not name another. */
const OWN_AGENT = new Set(['status', 'commit', 'conflicts', 'resolve', 'log', 'events.follow', 'diff', 'undo']);

function forbidden(message: string): ApiError {
  return new ApiError('forbidden', message);
}

/**
 * The request's parameters as the scope allows them (the agent filled in), or a `forbidden` error.
 * `canSee(seq)`: does the agent's own log show event `seq`? Asked before `show` does any work, so a
 * refusal costs nothing and takes no longer for a large event than for a small one.
 */
export function authorize(scope: string | null, method: string, params: Params, canSee: (seq: number) => boolean = () => false): Params {
  if (scope === null) return params;
  if (OWN_AGENT.has(method)) {
    const asked = params.agent;
    if (asked !== undefined && asked !== null && asked !== scope) {
      throw forbidden(`inside the sandbox of agent ${scope}, cowfs can only use ${scope}, not ${String(asked)}`);
    }
    return { ...params, agent: scope };
  }
  if (method === 'show') {
    const seq = params.seq;
    if (typeof seq === 'number' && !canSee(seq)) {
      throw forbidden(`event ${seq} belongs to another agent; inside the sandbox of ${scope} only its own log can be shown`);
    }
    return params;
  }
  if (method === 'ls') return params; // its result is filtered
  if (method === 'config' && params.value === undefined) return params;
  const verb = method === 'config' ? 'config (changing a setting)' : method;
  throw forbidden(`cowfs ${verb} is not allowed inside the sandbox of agent ${scope}`);
}

/** A result as the scope may see it: `ls` lists the agent alone. */
export function scopeResult(scope: string | null, method: string, result: unknown): unknown {
  if (scope === null || method !== 'ls') return result;
  return (result as AgentInfo[]).filter((a) => a.name === scope);
}
