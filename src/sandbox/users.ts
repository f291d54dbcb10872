import { execFileSync } from 'node:child_process';
import type { SandboxUser } from './bwrap.js';

/** `--user NAME|UID`: the password database's entry (via getent, so NSS users count), or a bare numeric uid. */
export function lookupUser(spec: string): SandboxUser {
  let line = '';
  try {
    line = execFileSync('getent', ['passwd', spec], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim().split('\n')[0] ?? '';
  } catch {
    // Not in the database (getent exits 2).
  }
  if (line) {
    const [name, , uid, gid, , home] = line.split(':');
    return { uid: Number(uid), gid: Number(gid), name, home };
  }
  if (/^\d+$/.test(spec)) return { uid: Number(spec), gid: Number(spec) };
  throw new Error(`--user ${spec}: no such user`);
}
