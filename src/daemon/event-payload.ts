import DiffMatchPatch from 'diff-match-patch';
import type { CowEvent } from '../events/types.js';
import { isBinary } from '../merge/index.js';
import type { FileEntry } from '../overlay/entry.js';
import type { Overlay } from '../overlay/overlay.js';

/** Text files up to this size travel inside streamed events. */
const INLINE_TEXT_MAX = 64 * 1024;
const dmp = new DiffMatchPatch();
// A patch is correct however long the diff ran, only less compact: never spend a second on one.
dmp.Diff_Timeout = 0.05;

/** The new content as a patch against the merge base when there is one, else whole. */
export type FilePayload = { path: string; hash: string; patch: string; against: string } | { path: string; hash: string; content: string };

function payload(ov: Overlay, path: string, e: FileEntry): FilePayload | undefined {
  if (e.size > INLINE_TEXT_MAX) return undefined;
  const bytes = ov.blobs.get(e.hash);
  if (isBinary(bytes)) return undefined;
  const text = bytes.toString('utf8');
  if (e.baseHash && ov.blobs.has(e.baseHash) && ov.blobs.size(e.baseHash) <= INLINE_TEXT_MAX) {
    const base = ov.blobs.get(e.baseHash);
    if (!isBinary(base)) return { path, hash: e.hash, against: e.baseHash, patch: dmp.patch_toText(dmp.patch_make(base.toString('utf8'), text)) };
  }
  return { path, hash: e.hash, content: text };
}

/**
 * What a subscriber on another machine needs besides hashes: for small text
 * files, the content or a diff-match-patch patch against the merge base, so
 * it can apply a write or a rebase without reading the parent's disk.
 * Computed only for streaming, never stored in the log.
 */
export function withPayload(ov: Overlay, ev: CowEvent): CowEvent & { files?: FilePayload[] } {
  const files: FilePayload[] = [];
  const add = (path: string, e: unknown) => {
    if (!e || (e as FileEntry).kind !== 'file' || files.some((f) => f.path === path && f.hash === (e as FileEntry).hash)) return;
    const p = payload(ov, path, e as FileEntry);
    if (p) files.push(p);
  };
  if (ev.type === 'put' || ev.type === 'truncate') add(ev.path, ev.entry);
  else if (ev.type === 'move') add(ev.to, ev.entry);
  else if (ev.type === 'AGENT_COMMIT_CREATED') for (const [p, e] of ev.changes) add(p, e);
  // A rebase moves the working tree and the head (what the agent's children are rebased onto next).
  else if (ev.type === 'AGENT_REBASED') for (const [p, e] of [...ev.changes, ...ev.headChanges]) add(p, e);
  return files.length ? { ...ev, files } : ev;
}
