import { canonicalJson, sha256, BUILDER_VERSION } from '../compile/input-hash.js';
import { revParse } from '../compile/ostree.js';
import { removeSpecialFilesIn, rmdirIn, removeRootDir } from '../compile/rootfs.js';
import { checkoutBase } from './layer.js';
import { ensureDir } from '../compile/host-files.js';
import os from 'node:os';
import path from 'node:path';
import { withLock } from '../lock.js';
import { run } from '../exec.js';
import { unknownPackages } from './packages.js';
import type { ImageManifest } from '../manifest/types.js';
import type { Step } from './step.js';

/** mmdebstrap's argv for a manifest: pure, so unit tests can check it. */
export function mmdebstrapArgs(m: ImageManifest, root: string, aptCache: string): string[] {
  const b = m.base;
  const args = [
    `--variant=${b.variant ?? 'minbase'}`,
    `--components=${(b.components ?? ['main']).join(',')}`,
    '--mode=root',
    '--format=directory',
    // Reuse downloaded .debs between builds: mmdebstrap's documented cache recipe.
    '--skip=essential/unlink',
    '--skip=download/empty',
    `--setup-hook=mkdir -p "$1"/var/cache/apt/archives/`,
    `--setup-hook=sync-in ${aptCache} /var/cache/apt/archives/`,
    `--customize-hook=sync-out /var/cache/apt/archives ${aptCache}`,
    // Docs and recommends are what treefiles also leave out by default.
    '--aptopt=APT::Install-Recommends "false"',
    '--dpkgopt=force-unsafe-io',
  ];
  if (m.packages?.length) args.push(`--include=${m.packages.join(',')}`);
  args.push(b.suite ?? 'bookworm', root);
  // Without a mirror mmdebstrap uses the host's apt sources (never a hard-coded host).
  if (b.mirror) args.push(b.mirror);
  return args;
}

/**
 * The cache key of a Debian base: everything that decides what mmdebstrap
 * produces. The same key on a later build checks the cached tree out instead
 * of running mmdebstrap again (an overlay edit then costs seconds, not minutes).
 * The archive moves on (security updates): `treecast build --force` refreshes it.
 */
export function debianBaseKey(m: ImageManifest): string {
  return sha256(canonicalJson({ builder: BUILDER_VERSION, base: m.base, packages: [...(m.packages ?? [])].sort() }));
}

/**
 * Downloaded .debs, shared by every repository and cache dir of this user on
 * the machine: a package is fetched once, not once per checkout or CI cache.
 * $TREECAST_APT_CACHE, else $XDG_CACHE_HOME/treecast/apt-archives, else
 * ~/.cache/treecast/apt-archives. apt checks each .deb against the archive's
 * signed checksums before using it, so sharing it trusts nothing new.
 */
export function aptArchiveCache(env: NodeJS.ProcessEnv = process.env): string {
  if (env.TREECAST_APT_CACHE) return path.resolve(env.TREECAST_APT_CACHE);
  const base = env.XDG_CACHE_HOME && path.isAbsolute(env.XDG_CACHE_HOME) ? env.XDG_CACHE_HOME : path.join(env.HOME || os.homedir(), '.cache');
  return path.join(base, 'treecast', 'apt-archives');
}

export const baseCacheRef = (key: string) => `treecast/cache/base/${key.slice(0, 32)}`;

/** base.source: debian — a root filesystem from Debian packages; `packages` are installed in the same run. */
export const baseDebian: Step = {
  name: 'base (debian)',
  tools: ['mmdebstrap', 'ostree'],
  applies: (m) => m.base.source === 'debian',
  async run(ctx) {
    const summary = `${ctx.manifest.base.suite ?? 'bookworm'}/${ctx.manifest.base.variant ?? 'minbase'} + ${ctx.manifest.packages?.length ?? 0} packages`;
    const cacheRef = baseCacheRef(debianBaseKey(ctx.manifest));
    const cached = ctx.refreshBase ? undefined : await revParse(ctx.localRepo, cacheRef);
    if (cached) {
      rmdirIn(ctx.root);
      await checkoutBase(ctx, cached);
      return `${summary} (cached base ${cached.slice(0, 12)})`;
    }
    const aptCache = aptArchiveCache();
    ensureDir(aptCache);
    // One mmdebstrap per shared archive cache at a time: its sync-out writes .debs in place, and a concurrent sync-in could read half a file.
    await withLock(`${aptCache}.lock`, `Debian package cache ${aptCache}`, () => run('mmdebstrap', mmdebstrapArgs(ctx.manifest, ctx.root, aptCache), {
      // INITRD=No: Debian's /etc/kernel/postinst.d/dracut (run by the kernel's
      // postinst and by dracut's trigger) then builds no initramfs here; the
      // initramfs step builds it once, after the image's own dracut config is
      // in place, and caches it by its inputs (initramfs.ts).
      env: { SOURCE_DATE_EPOCH: String(ctx.epoch), LC_ALL: 'C.UTF-8', INITRD: 'No' },
      signal: ctx.signal,
    })).catch((err) => {
      throw unknownPackages(ctx, err);
    });
    // ostree stores no device nodes; nothing later needs them (bwrap provides /dev).
    removeSpecialFilesIn(ctx.root);
    const commit = (await run('ostree', ['commit', `--repo=${ctx.localRepo}`, `--branch=${cacheRef}`, `--tree=dir=${ctx.root}`, `--timestamp=@${ctx.epoch}`, '--no-xattrs', '--no-bindings', `--subject=treecast base cache`], { signal: ctx.signal })).stdout.trim();
    if (ctx.checkout !== 'copy') {
      // From here on the root is the cached commit's hardlinks, exactly as on a
      // rebuild: the image commit then re-reads only what later steps change.
      removeRootDir(ctx.root);
      await checkoutBase(ctx, commit);
    }
    return summary;
  },
};
