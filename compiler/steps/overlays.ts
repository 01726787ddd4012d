import { UserError, withContext } from '../diagnostics.js';
import { copyTreeInto } from '../compile/rootfs.js';
import { resolveRepoInput } from '../paths.js';
import type { Step } from './step.js';

export const overlays: Step = {
  name: 'overlays',
  tools: [],
  applies: (m) => (m.overlays?.length ?? 0) > 0,
  async run(ctx) {
    let n = 0;
    for (const o of ctx.manifest.overlays!) {
      try {
        // By its real path: an overlay that is itself an in-repo symlink is copied from where it points.
        const dir = resolveRepoInput(ctx.repo, o, 'directory');
        if (!dir.ok) throw new UserError(`"${o}" ${dir.reason}`);
        n += copyTreeInto(dir.path, ctx.root);
      } catch (err) {
        throw withContext(`applying overlay ${o}`, err);
      }
    }
    return `${ctx.manifest.overlays!.length} overlays, ${n} files`;
  },
};
