/** Reading a V8 .cpuprofile (node --cpu-prof): self time by function, the top ones first. */
import fs from 'node:fs';
import path from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples?: number[];
  timeDeltas?: number[];
  startTime: number;
  endTime: number;
}

export interface HotSpot {
  fn: string;
  where: string;
  selfMs: number;
  share: number;
}

function shortUrl(url: string, root: string): string {
  if (!url) return '(native)';
  const p = url.replace(/^file:\/\//, '');
  return p.startsWith(root) ? path.relative(root, p) : p.replace(/^.*\/node_modules\//, 'node_modules/');
}

/** Self time per function (summed over every node of the same function), largest first. */
export function hotSpots(file: string, root: string, top = 20): { totalMs: number; idleMs: number; spots: HotSpot[] } {
  const prof = JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  if (prof.samples && prof.timeDeltas) {
    for (let i = 0; i < prof.samples.length; i++) {
      const id = prof.samples[i]!;
      selfUs.set(id, (selfUs.get(id) ?? 0) + (prof.timeDeltas[i + 1] ?? prof.timeDeltas[i] ?? 0));
    }
  }
  const agg = new Map<string, { fn: string; where: string; us: number }>();
  let total = 0;
  let idle = 0;
  for (const [id, us] of selfUs) {
    const n = byId.get(id)!;
    total += us;
    const fn = n.callFrame.functionName || '(anonymous)';
    if (fn === '(idle)') idle += us;
    const where = `${shortUrl(n.callFrame.url, root)}${n.callFrame.url ? `:${n.callFrame.lineNumber + 1}` : ''}`;
    const key = `${fn}@${where}`;
    const a = agg.get(key) ?? { fn, where, us: 0 };
    a.us += us;
    agg.set(key, a);
  }
  const busy = total - idle;
  const spots = [...agg.values()]
    .filter((a) => a.fn !== '(idle)')
    .sort((a, b) => b.us - a.us)
    .slice(0, top)
    .map((a) => ({ fn: a.fn, where: a.where, selfMs: a.us / 1000, share: busy > 0 ? a.us / busy : 0 }));
  return { totalMs: total / 1000, idleMs: idle / 1000, spots };
}
