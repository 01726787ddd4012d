import { canonicalJson, sha256, BUILDER_VERSION } from '../build/input-hash.js';
import { revParse } from '../build/ostree.js';
import { removeSpecialFilesIn, rmdirIn } from '../build/rootfs.js';
import { ensureDir } from '../build/host-files.js';
import path from 'node:path';
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
      // A copy, not hardlinks: later steps edit files in place.
      await run('ostree', ['checkout', `--repo=${ctx.localRepo}`, '--force-copy', cached, ctx.root], { signal: ctx.signal });
      return `${summary} (cached base ${cached.slice(0, 12)})`;
    }
    const aptCache = path.join(ctx.repo.cacheDir, 'apt-archives');
    ensureDir(aptCache);
    await run('mmdebstrap', mmdebstrapArgs(ctx.manifest, ctx.root, aptCache), {
      env: { SOURCE_DATE_EPOCH: String(ctx.epoch), LC_ALL: 'C.UTF-8' },
      signal: ctx.signal,
    }).catch((err) => {
      throw unknownPackages(ctx, err);
    });
    // ostree stores no device nodes; nothing later needs them (bwrap provides /dev).
    removeSpecialFilesIn(ctx.root);
    await run('ostree', ['commit', `--repo=${ctx.localRepo}`, `--branch=${cacheRef}`, `--tree=dir=${ctx.root}`, `--timestamp=@${ctx.epoch}`, '--no-xattrs', '--no-bindings', `--subject=treecast base cache`], { signal: ctx.signal });
    return summary;
  },
};
