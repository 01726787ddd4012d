import path from 'node:path';
import { copyTreeInto } from '../build/rootfs.js';
import type { Step } from './step.js';

/** base.source: tree — a directory of the repository is the starting root. */
export const baseTree: Step = {
  name: 'base (tree)',
  tools: [],
  applies: (m) => m.base.source === 'tree',
  async run(ctx) {
    const src = path.resolve(ctx.repo.root, ctx.manifest.base.path!);
    const n = copyTreeInto(src, ctx.root);
    return `${n} entries from ${ctx.manifest.base.path}`;
  },
};
