import { UserError } from '../diagnostics.js';
import { checkoutBase } from './layer.js';
import { revParse } from '../compile/ostree.js';
import { isDirIn, lstatIn, readdirIn, removeInRoot, renameIn, rmdirIn } from '../compile/rootfs.js';
import { FACTORY_VAR } from './finalize.js';
import type { Step } from './step.js';

/**
 * base.source: image — start from the built commit of another image of the
 * repository (like confluent `imgutil pack -b`), undoing finalize's OSTree
 * layout so later steps see a normal root (/etc, a populated /var).
 */
export const baseImage: Step = {
  name: 'base (image)',
  tools: ['ostree'],
  applies: (m) => m.base.source === 'image',
  async run(ctx) {
    const baseName = ctx.manifest.base.image!;
    const baseRef = ctx.baseRef;
    const rev = baseRef && (await revParse(ctx.localRepo, baseRef));
    if (!rev) throw new UserError(`base image "${baseName}" has not been built (build it first: treecast build ${baseName})`);
    rmdirIn(ctx.root);
    await checkoutBase(ctx, rev);
    unfinalize(ctx.root);
    return `${baseName} at ${rev.slice(0, 12)}`;
  },
};

function unfinalize(root: string): void {
  if (lstatIn(root, '/usr/etc')?.isDirectory()) {
    removeInRoot(root, '/etc');
    renameIn(root, '/usr/etc', '/etc');
  }
  const factory = `/${FACTORY_VAR}`;
  if (isDirIn(root, factory)) {
    for (const name of readdirIn(root, factory)) {
      removeInRoot(root, `/var/${name}`);
      renameIn(root, `${factory}/${name}`, `/var/${name}`);
    }
    removeInRoot(root, factory);
  }
}
