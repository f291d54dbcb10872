import fs from 'node:fs';
import path from 'node:path';
import { listFuseMounts } from '../fuse/mount-table.js';
import { parseMountSource, SOCKET_NAME } from '../daemon/protocol.js';
import { CliError } from './output.js';

export interface Target {
  /** Unknown inside a `cowfs run` sandbox, which reaches its daemon through COWFS_SOCKET alone. */
  stateDir?: string;
  socket: string;
  /** The agent whose mount (or sandbox) the command runs in: the default AGENT. */
  agent?: string;
}

export interface LocateOptions {
  workspace?: string;
  stateDir?: string;
}

/**
 * Finds the daemon the way git finds its repository: an explicit
 * --state-dir or --workspace, else the socket of the `cowfs run` sandbox
 * the command runs in (COWFS_SOCKET), else from the current directory
 * upward — a workspace (its .cowfs/) or any agent's mount (its /proc/mounts
 * source names the agent and the state directory).
 */
export function locate(opts: LocateOptions, cwd = process.cwd()): Target {
  const envAgent = process.env.COWFS_AGENT;
  if (opts.stateDir) return at(path.resolve(opts.stateDir), envAgent);
  if (opts.workspace) return at(path.resolve(opts.workspace, '.cowfs'), envAgent);
  if (process.env.COWFS_SOCKET) return { socket: process.env.COWFS_SOCKET, agent: envAgent };
  if (process.env.COWFS_STATE_DIR) return at(process.env.COWFS_STATE_DIR, envAgent);
  const mounts = new Map<string, { agent: string; stateDir: string }>();
  for (const m of listFuseMounts()) {
    const src = parseMountSource(m.source);
    if (src) mounts.set(m.mountpoint, src);
  }
  for (let dir = path.resolve(cwd); ; dir = path.dirname(dir)) {
    const mount = mounts.get(dir);
    if (mount) return at(mount.stateDir, mount.agent);
    const state = path.join(dir, '.cowfs');
    if (fs.existsSync(path.join(state, SOCKET_NAME)) || fs.existsSync(path.join(state, 'store'))) return at(state, envAgent);
    if (dir === path.dirname(dir)) break;
  }
  throw new CliError(`not inside a cowfs workspace or mount (no .cowfs/ from ${cwd} upward); pass --workspace DIR`);
}

function at(stateDir: string, agent: string | undefined): Target {
  return { stateDir, socket: path.join(stateDir, SOCKET_NAME), agent };
}
