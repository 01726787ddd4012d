/**
 * The layered image root (docs/layers.md). A base commit is checked out as
 * hardlinks to the objects of the bare build repository: exact owners, modes
 * and setuid bits in well under a second, with no bytes copied. Nothing may
 * then write through one of those files, or the cached object (and every
 * later build from it) would change:
 *
 * - treecast's own steps go through compile/rootfs.ts, which replaces files and
 *   unshares a linked file before a chmod/chown;
 * - code it does not control (apt, postprocess scripts, dracut) runs in its
 *   sandbox on an overlayfs whose lower layer is the root: a write copies the
 *   file up first. The upper layer is folded back into the root afterwards.
 */
import path from 'node:path';
import { run } from '../exec.js';
import { ensureDir } from '../compile/host-files.js';
import { applyUpperIn, mergedListings, removeRootDir } from '../compile/rootfs.js';
import type { BuildContext } from './step.js';

/** Check `rev` out as the image root (which must not exist yet). */
export async function checkoutBase(ctx: BuildContext, rev: string): Promise<void> {
  // `copy`: the old full byte copy, kept for the equivalence test only.
  const copy = ctx.checkout === 'copy' ? ['--force-copy'] : [];
  await run('ostree', ['checkout', `--repo=${ctx.localRepo}`, ...copy, rev, ctx.root], { signal: ctx.signal });
}

/**
 * Run `fn` with a writable view of the image root that never writes through
 * a file of the root: an overlay (upper and work dirs in the build's scratch
 * space, on the same filesystem, so folding back is a rename). The overlay
 * is unmounted even when `fn` fails; an interrupted build's mount is
 * removed by the next build (unmountLeftovers in compile/build.ts).
 *
 * redirect_dir=off and metacopy=off keep the upper dir plain: a renamed
 * directory is copied (rename(2) says EXDEV and `mv` copies), and a chmod
 * copies the whole file up, so nothing in upper depends on overlay xattrs.
 */
export async function withLayer<T>(ctx: BuildContext, label: string, fn: (root: string) => Promise<T>): Promise<T> {
  if (ctx.checkout === 'copy') return fn(ctx.root);
  const dir = path.join(ctx.workDir, `layer-${label}`);
  const { upper, merged } = await mountLayer(ctx.root, dir, label);
  let result: T;
  let names: Map<string, Set<string>>;
  try {
    result = await fn(merged);
    names = mergedListings(upper, merged);
  } finally {
    await run('umount', [merged]);
  }
  applyUpperIn(ctx.root, upper, names);
  removeRootDir(dir);
  return result;
}

/**
 * Mount an overlay of `lower` at `dir`/merged, its upper and work dirs
 * beside it in `dir` (made here); the caller unmounts `merged`. Also for
 * `treecast shell`, which keeps the upper dir instead of folding it back.
 */
export async function mountLayer(lower: string, dir: string, label: string): Promise<{ upper: string; merged: string }> {
  const upper = path.join(dir, 'upper');
  const work = path.join(dir, 'work');
  const merged = path.join(dir, 'merged');
  for (const d of [upper, work, merged]) ensureDir(d);
  await run('mount', ['-t', 'overlay', `treecast-${label}`, '-o', `lowerdir=${lower},upperdir=${upper},workdir=${work},redirect_dir=off,metacopy=off,index=off,xino=off`, merged]);
  return { upper, merged };
}
