import type { ApiContext } from './api.js';
import { ApiError } from './errors.js';

export type Params = Record<string, unknown>;

export function str(p: Params, key: string): string {
  const v = p[key];
  if (typeof v !== 'string' || v === '') throw new ApiError('bad_request', `missing parameter: ${key}`);
  return v;
}

export function optStr(p: Params, key: string): string | undefined {
  const v = p[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new ApiError('bad_request', `parameter ${key} must be a string`);
  return v;
}

/**
 * A path the daemon reads or writes itself must not be inside a mount it
 * serves (it would wait on itself); one it writes, not in the workspace
 * (cowfs writes there only when landing).
 */
export function checkOutside(ctx: ApiContext, file: string, what: string, writes: boolean): void {
  for (const a of ctx.overlay.agents()) {
    const mp = ctx.mounts.mountpointOf(a.name);
    if (mp && (file === mp || file.startsWith(`${mp}/`))) throw new ApiError('bad_request', `${what} ${file} is inside the mount of ${a.name}`);
  }
  const ws = ctx.overlay.workspace.root;
  if (writes && (file === ws || file.startsWith(`${ws}/`))) throw new ApiError('bad_request', `${what} ${file} is inside the workspace`);
}
