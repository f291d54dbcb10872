import fs from 'node:fs';
import path from 'node:path';

/**
 * The root of this cowfs installation (bin/, dist/, native/, node_modules/),
 * from src/ or dist/src/ alike: the first directory upward that holds
 * native/binding.gyp.
 */
export function packageRoot(): string {
  for (let dir = import.meta.dirname; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'native', 'binding.gyp'))) return dir;
  }
  throw new Error(`no cowfs installation (native/binding.gyp) above ${import.meta.dirname}`);
}
