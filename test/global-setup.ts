import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cleanupMountsUnder } from './helpers/daemon.js';

/**
 * Before and after the whole suite: free any FUSE mount a crashed or
 * timed-out test left under the test roots (lazy unmount, aborting the
 * connection if needed), so a failure never leaves a mount that can hang
 * the machine.
 */
function sweep(): void {
  for (const name of fs.readdirSync(os.tmpdir())) {
    if (name.startsWith('cowfs-test-')) cleanupMountsUnder(path.join(os.tmpdir(), name));
  }
}

export function setup(): void {
  sweep();
}

export function teardown(): void {
  sweep();
}
