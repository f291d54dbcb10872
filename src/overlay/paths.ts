import { FsError } from './contract.js';

/**
 * Paths inside a tree: relative, '/'-separated, no leading slash, '' for the
 * root. Anything that could escape the tree (`..`, an absolute path, NUL)
 * is refused rather than normalised away.
 */
export function checkPath(p: string): string {
  if (p.includes('\0')) throw new FsError('EINVAL', `path contains NUL: ${JSON.stringify(p)}`);
  if (p.startsWith('/')) throw new FsError('EINVAL', `path must be relative to the tree: ${p}`);
  if (p === '') return p;
  for (const part of p.split('/')) {
    if (part === '' || part === '.' || part === '..') {
      throw new FsError('EINVAL', `path must not contain empty, '.' or '..' parts: ${p}`);
    }
    // UTF-8 takes at most 3 bytes per UTF-16 unit: only a long name needs counting.
    if (part.length > 85 && Buffer.byteLength(part) > 255) throw new FsError('ENAMETOOLONG', `name too long in ${p}`);
  }
  return p;
}

export function parentOf(p: string): string {
  const i = p.lastIndexOf('/');
  return i < 0 ? '' : p.slice(0, i);
}

export function baseName(p: string): string {
  return p.slice(p.lastIndexOf('/') + 1);
}

export function join(dir: string, name: string): string {
  return dir === '' ? name : `${dir}/${name}`;
}

/** Is `p` equal to `dir` or inside it? */
/** How many names deep a path is ('' counts as one): deeper paths first when removing. */
export function depth(p: string): number {
  return p.split('/').length;
}

export function isWithin(p: string, dir: string): boolean {
  return dir === '' || p === dir || p.startsWith(`${dir}/`);
}

/** Re-roots `p` from under `from` to under `to` (p must be within from). */
export function reroot(p: string, from: string, to: string): string {
  return p === from ? to : join(to, p.slice(from === '' ? 0 : from.length + 1));
}

const AGENT_NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;

export function checkAgentName(name: string): string {
  if (!AGENT_NAME.test(name)) {
    throw new Error(
      `invalid agent name ${JSON.stringify(name)}: use 1–64 characters of a-z 0-9 . _ -, starting with a letter or digit`,
    );
  }
  return name;
}
