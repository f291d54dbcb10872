import { defineConfig } from 'vitest/config';

/** The fast tier alone: the core, no FUSE (`npx vitest run -c vitest.unit.config.ts`). */
export default defineConfig({ test: { include: ['test/unit/**/*.test.ts'], testTimeout: 60_000 } });
