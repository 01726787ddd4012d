import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Integration tests drive real ostree/mmdebstrap/QEMU: generous per-test limits,
    // and files run one at a time on this 2-core machine so boots are not starved.
    testTimeout: 120_000,
    hookTimeout: 1_200_000,
    fileParallelism: false,
    reporters: ['default'],
  },
});
