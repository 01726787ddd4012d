import { UserError } from '../diagnostics.js';
import { copyTreeInto } from '../compile/rootfs.js';
import { resolveRepoInput } from '../paths.js';
import type { Step } from './step.js';

/** base.source: tree — a directory of the repository is the starting root. */
export const baseTree: Step = {
  name: 'base (tree)',
  tools: [],
  applies: (m) => m.base.source === 'tree',
  async run(ctx) {
    const src = resolveRepoInput(ctx.repo, ctx.manifest.base.path!, 'directory');
    if (!src.ok) throw new UserError(`base.path "${ctx.manifest.base.path}" ${src.reason}`);
    const n = copyTreeInto(src.path, ctx.root);
    return `${n} entries from ${ctx.manifest.base.path}`;
  },
};
