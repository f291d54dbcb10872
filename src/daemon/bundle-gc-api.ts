import fs from 'node:fs';
import path from 'node:path';
import { collectGarbage } from '../overlay/gc.js';
import { exportAgent } from '../transfer/export.js';
import { importBundle } from '../transfer/import.js';
import { parseHave } from '../transfer/manifest.js';
import type { Handler } from './api.js';
import { ApiError } from './errors.js';
import { checkOutside, optStr, str } from './params.js';

/** Export, import and gc each walk the whole store: one at a time, so gc never sweeps what an import is adding. */
let running: string | undefined;

async function exclusive<T>(what: string, fn: () => Promise<T>): Promise<T> {
  if (running) throw new ApiError('busy', `a ${running} is running in this daemon; try again when it has finished`);
  running = what;
  try {
    return await fn();
  } finally {
    running = undefined;
  }
}

function absolute(p: string, what: string): string {
  if (!p.startsWith('/')) throw new ApiError('bad_request', `${what} must be an absolute path`);
  return p;
}

/** Moving agents between machines, and giving disk space back (issue 9, items 4 and 5). */
export const bundleAndGcHandlers: Record<string, Handler> = {
  have(ctx) {
    const ids = [...ctx.overlay.blobs.ids()];
    return { stateDir: ctx.overlay.stateDir, count: ids.length, ids };
  },

  export(ctx, p, progress) {
    const agent = str(p, 'agent');
    const out = absolute(str(p, 'out'), '--out');
    const havePath = optStr(p, 'have');
    ctx.overlay.agent(agent);
    checkOutside(ctx, out, '--out', true);
    if (!fs.statSync(path.dirname(out), { throwIfNoEntry: false })?.isDirectory()) {
      throw new ApiError('bad_request', `--out ${out}: the directory ${path.dirname(out)} does not exist`);
    }
    if (fs.statSync(out, { throwIfNoEntry: false })?.isDirectory()) throw new ApiError('bad_request', `--out ${out} is a directory`);
    let have = new Set<string>();
    if (havePath !== undefined) {
      checkOutside(ctx, absolute(havePath, '--have'), '--have', false);
      let text: string;
      try {
        text = fs.readFileSync(havePath, 'utf8');
      } catch (err) {
        throw new ApiError('bad_request', `cannot read the have-manifest ${havePath}: ${(err as Error).message}`);
      }
      try {
        have = parseHave(text);
      } catch (err) {
        throw new ApiError('bad_request', `${havePath}: ${(err as Error).message}`);
      }
    }
    return exclusive('export', () => exportAgent(ctx.overlay, agent, out, have, progress));
  },

  import(ctx, p, progress) {
    const file = absolute(str(p, 'file'), 'the bundle');
    checkOutside(ctx, file, 'the bundle', false);
    const opts = { as: optStr(p, 'as'), parent: optStr(p, 'parent'), force: p.force === true };
    return exclusive('import', () => importBundle(ctx.overlay, file, opts, progress));
  },

  gc(ctx, p, progress) {
    const hours = p.keepRemovedHours ?? ctx.overlay.settings.all().keepRemovedHours;
    if (typeof hours !== 'number' || !(hours >= 0)) throw new ApiError('bad_request', '--keep-removed takes a number of hours ≥ 0');
    return exclusive('gc', () => collectGarbage(ctx.overlay, { dryRun: p.dryRun === true, keepRemovedMs: hours * 3600_000 }, progress));
  },
};
