import { CommandError, run } from '../exec.js';
import { UserError, type Diagnostic } from '../diagnostics.js';
import { locate } from '../manifest/schema.js';
import { hostProcEntries, sandboxArgs } from './sandbox.js';
import { withLayer } from './layer.js';
import type { BuildContext, Step } from './step.js';

/**
 * packages on an image-derived base: apt inside the image root. (With a
 * debian base, mmdebstrap installs them together with the base.) This is the
 * one sandboxed run that keeps the network: apt must reach the archive.
 * The package lists come from the image's own /etc/apt, which the pull
 * request controls, so apt runs in the same sandbox as postprocess.
 */
export const packagesOnImage: Step = {
  name: 'packages',
  tools: ['bwrap'],
  applies: (m) => m.base.source === 'image' && (m.packages?.length ?? 0) > 0,
  async run(ctx) {
    const pkgs = ctx.manifest.packages!;
    const script = 'apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" && apt-get clean && rm -rf /var/lib/apt/lists/*';
    // On an overlay of the root: maintainer scripts write files in place, and the root's files may be hardlinks into the cache (layer.ts).
    await withLayer(ctx, 'packages', async (root) => {
      // INITRD=No: no initramfs from the kernel's postinst here; the initramfs step builds it once (initramfs.ts).
      const args = sandboxArgs(root, { network: true, epoch: ctx.epoch, image: ctx.manifest.name, procPresent: hostProcEntries(), env: { INITRD: 'No' } }, ['/bin/sh', '-ec', script, 'sh', ...pkgs]);
      await run('bwrap', args, { signal: ctx.signal, env: { PATH: process.env.PATH }, cleanEnv: true }).catch((err) => {
        throw unknownPackages(ctx, err);
      });
    });
    return `${pkgs.length} packages`;
  },
};

/** For tests and callers that knew it here: the sandbox lives in sandbox.ts now. */
export { sandboxArgs } from './sandbox.js';

/**
 * apt names a package it cannot find only deep inside its output. Point at the
 * manifest entry instead, the way validation would, so the fix is obvious.
 * Any other failure is passed through unchanged.
 */
export function unknownPackages(ctx: Pick<BuildContext, 'manifest' | 'image'>, err: unknown): unknown {
  if (!(err instanceof CommandError)) return err;
  const missing = [...err.stderr.matchAll(/Unable to locate package (\S+)/g)].map((m) => m[1]!);
  const pkgs = ctx.manifest.packages ?? [];
  const diagnostics: Diagnostic[] = [];
  for (const name of new Set(missing)) {
    const i = pkgs.indexOf(name);
    if (i < 0) continue;
    diagnostics.push({ loc: locate(ctx.image.root, ['packages', i]), path: `packages[${i}]`, message: `the archive has no package "${name}"`, hint: 'check the name with `apt-cache search` or the suite and components under base' });
  }
  if (!diagnostics.length) return err;
  return new UserError(`${diagnostics.length === 1 ? 'a package' : `${diagnostics.length} packages`} could not be found (apt: "Unable to locate package")`, diagnostics);
}
