import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    globalSetup: ['test/global-setup.ts'],
    // Integration tests mount real FUSE filesystems; run files one at a time
    // so a 2-core CI machine is not oversubscribed.
    fileParallelism: false,
  },
});
