import { defineConfig } from 'vitest/config';

const shared = {
  // Generous: the slowest tests take ~25 s on a loaded 2-core machine, and a slow CI box must not fail a
  // test that is only slow. A hung CLI call still ends at 60 s (test/helpers/daemon.ts), with its output.
  testTimeout: 120_000,
  hookTimeout: 120_000,
  globalSetup: ['test/global-setup.ts'],
};

/**
 * The unit tier once, and the integration tier once per FUSE adapter: the
 * daemon (test/helpers/daemon.ts) and the mount servers (test/fixtures/serve.ts)
 * read COWFS_TEST_FUSE.
 */
export default defineConfig({
  test: {
    // Integration tests mount real FUSE filesystems; run files one at a time
    // so a 2-core CI machine is not oversubscribed.
    fileParallelism: false,
    projects: [
      { test: { ...shared, name: 'unit', include: ['test/unit/**/*.test.ts'] } },
      ...['libfuse3', 'libfuse2'].map((fuse) => ({
        test: { ...shared, name: `integration-${fuse}`, include: ['test/integration/**/*.test.ts'], env: { COWFS_TEST_FUSE: fuse } },
      })),
    ],
  },
});
