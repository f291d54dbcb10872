import os from 'node:os';
import type { Errno } from '../overlay/contract.js';

/** FsError codes as the negative errno numbers FUSE answers with. */
export function negErrno(code: Errno): number {
  return -(os.constants.errno[code] ?? os.constants.errno.EIO);
}
