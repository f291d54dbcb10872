import { describe, expect, it } from 'vitest';
import { adapterNamed, defaultAdapter } from '../../src/fuse/adapters.js';

describe('FUSE adapters: which one a daemon uses', () => {
  it('the native libfuse 3 adapter by default on Linux (set-up builds it), libfuse 2 by name, a clear error for any other', async () => {
    const { adapter, fallback } = await defaultAdapter();
    if (process.platform === 'linux') {
      expect(fallback).toBeUndefined();
      expect(adapter.name).toBe('libfuse3 (native)');
    }
    expect((await adapterNamed('libfuse2')).name).toBe('libfuse2 (fuse-native)');
    await expect(adapterNamed('fuse4')).rejects.toThrow('unknown FUSE adapter "fuse4" (available: libfuse3, libfuse2)');
  });
});
