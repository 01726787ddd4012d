import path from 'node:path';
import { UserError, withContext } from '../diagnostics.js';
import { copyTreeInto } from '../build/rootfs.js';
import { resolveInside } from '../paths.js';
import type { Step } from './step.js';

export const overlays: Step = {
  name: 'overlays',
  tools: [],
  applies: (m) => (m.overlays?.length ?? 0) > 0,
  async run(ctx) {
    let n = 0;
    for (const o of ctx.manifest.overlays!) {
      try {
        const dir = resolveInside(ctx.repo.root, o);
        if (!dir) throw new UserError('the overlay is outside the repository');
        n += copyTreeInto(path.resolve(dir), ctx.root);
      } catch (err) {
        throw withContext(`applying overlay ${o}`, err);
      }
    }
    return `${ctx.manifest.overlays!.length} overlays, ${n} files`;
  },
};
