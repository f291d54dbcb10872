import os from 'node:os';
import path from 'node:path';
import { cleanupStaleMounts } from './helpers/mounts.js';

/**
 * Before and after the whole suite: free every FUSE mount under the test
 * roots (os.tmpdir()/cowfs-test-*) whose server is dead or hung — lazy
 * unmount, aborting the connection through fusectl when something is stuck
 * on it — so a crashed or killed run never leaves a mount that can hang the
 * machine. Mounts whose server still answers are left alone: they belong to
 * another test run on the same machine (each test file stops its own
 * servers and daemons in its teardown).
 */
const PREFIX = path.join(os.tmpdir(), 'cowfs-test-');

async function sweep(when: string): Promise<void> {
  const freed = await cleanupStaleMounts(PREFIX, { onlyDead: true });
  if (freed.length > 0) process.stderr.write(`global ${when}: freed stale FUSE mounts: ${freed.join(', ')}\n`);
}

export async function setup(): Promise<void> {
  await sweep('setup');
}

export async function teardown(): Promise<void> {
  await sweep('teardown');
}
