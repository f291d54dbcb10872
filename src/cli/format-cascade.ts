import type { CascadeReport } from '../cascade/cascade.js';

/** What a cascade did, as a line or two (empty when nothing moved). */
export function describeCascade(r: CascadeReport): string {
  const parts: string[] = [];
  if (r.rebased.length) parts.push(`rebased ${r.rebased.join(', ')}`);
  for (const c of r.conflicted) parts.push(`CONFLICT in ${c.agent}: ${c.paths.join(', ')} (see: cowfs conflicts ${c.agent})`);
  if (r.paused.length) parts.push(`paused at ${r.paused.join(', ')} (unresolved conflicts)`);
  return parts.length ? `\n${parts.join('\n')}` : '';
}
