/**
 * The daemon's API over WebSocket (a unix socket in the state directory,
 * mode 0600): JSON requests `{id, method, params}` answered by
 * `{id, result}` or `{id, error: {message, code}}`; after `events.follow`
 * the daemon also pushes `{event}` messages. A long operation (export,
 * import, gc) may send `{progressOf: id, progress}` messages before its
 * answer. The CLI and any other client speak only this.
 */
export interface Request {
  id: number;
  method: string;
  params: Record<string, unknown>;
}

export type Response =
  | { id: number; result: unknown }
  | { id: number; error: { message: string; code: ErrorCode } };

export type ErrorCode = 'bad_request' | 'not_found' | 'conflict' | 'busy' | 'forbidden' | 'internal';

export const SOCKET_NAME = 'daemon.sock';
export const PID_NAME = 'daemon.pid';
export const LOG_NAME = 'daemon.log';

/** The fsname of an agent's mount, as /proc/mounts shows it: lets a CLI inside a mount find its daemon and agent. */
export function mountSource(agent: string, stateDir: string): string {
  return `cowfs:${agent}@${stateDir}`;
}

export function parseMountSource(source: string): { agent: string; stateDir: string } | undefined {
  const m = /^cowfs:([a-z0-9][a-z0-9._-]{0,63})@(\/.*)$/.exec(source);
  return m ? { agent: m[1]!, stateDir: m[2]! } : undefined;
}

export interface AgentInfo {
  name: string;
  parent: string | null;
  head: number;
  base: number | null;
  mountpoint: string | null;
  mounted: boolean;
  /** Whether its mount uses the kernel's writeback cache (`cowfs config writeCache`); null when not mounted. */
  writeCache: boolean | null;
  changed: number;
  bytes: number;
  openFiles: number;
}

export interface StatusInfo {
  pid: number;
  workspace: string;
  stateDir: string;
  adapter: string;
  uptimeMs: number;
  agents: number;
  mounted: number;
  lastSeq: number;
  /** Set when the client's agent scope is one agent (inside a mount or a sandbox). */
  agent?: AgentInfo;
}

/** What `run.start` answers: everything `cowfs run` needs to build the sandbox around the agent's tree. */
export interface RunSession {
  id: string;
  agent: string;
  created: boolean;
  workspace: string;
  stateDir: string;
  /** The agent's mount on the host: the sandbox binds it over the workspace path. */
  mountpoint: string;
  /** The agent's own `cowfs mount` mountpoint, if it has one (cwd there maps into the workspace path). */
  userMountpoint: string | null;
  /** Every agent's mountpoint: none may be reachable inside. */
  mountpoints: string[];
  /** A socket that serves this agent alone, for the CLI inside the sandbox. */
  socket: string;
}
