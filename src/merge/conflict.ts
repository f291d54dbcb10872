/**
 * Conflicts as values: the three versions of a file kept side by side as
 * data (contents or hashes), in the spirit of jj's `Merge<T>`, so that a
 * conflict can be stored, shown and resolved later instead of existing only
 * as markers in a working file.
 */
export interface Conflict<T> {
  base: T;
  ours: T;
  theirs: T;
}

/**
 * The value when the three-way merge is trivial: both sides equal, or one
 * side unchanged from the base (then the other side wins). undefined when
 * both sides changed differently.
 */
export function resolveTrivial<T>(c: Conflict<T>, equals: (x: T, y: T) => boolean = Object.is): { value: T } | undefined {
  if (equals(c.ours, c.theirs) || equals(c.theirs, c.base)) return { value: c.ours };
  if (equals(c.ours, c.base)) return { value: c.theirs };
  return undefined;
}

/** The same conflict with each version mapped, e.g. contents to hashes. */
export function mapConflict<T, U>(c: Conflict<T>, f: (v: T) => U): Conflict<U> {
  return { base: f(c.base), ours: f(c.ours), theirs: f(c.theirs) };
}
