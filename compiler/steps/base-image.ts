import { existsSync, readdirSync, renameSync, rmSync, rmdirSync } from 'node:fs';
import path from 'node:path';
import { UserError } from '../diagnostics.js';
import { run } from '../exec.js';
import { revParse } from '../build/ostree.js';
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
    rmdirSync(ctx.root);
    // A copy, not hardlinks: later steps and postprocess scripts edit files in place.
    await run('ostree', ['checkout', `--repo=${ctx.localRepo}`, '--force-copy', rev, ctx.root], { signal: ctx.signal });
    unfinalize(ctx.root);
    return `${baseName} at ${rev.slice(0, 12)}`;
  },
};

function unfinalize(root: string): void {
  const usrEtc = path.join(root, 'usr/etc');
  const etc = path.join(root, 'etc');
  if (existsSync(usrEtc)) {
    rmSync(etc, { recursive: true, force: true });
    renameSync(usrEtc, etc);
  }
  const factory = path.join(root, FACTORY_VAR);
  if (existsSync(factory)) {
    for (const name of readdirSync(factory)) {
      const dest = path.join(root, 'var', name);
      rmSync(dest, { recursive: true, force: true });
      renameSync(path.join(factory, name), dest);
    }
    rmSync(factory, { recursive: true, force: true });
  }
}
