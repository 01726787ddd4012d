import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { run } from '../exec.js';
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

/** base.source: debian — a root filesystem from Debian packages; `packages` are installed in the same run. */
export const baseDebian: Step = {
  name: 'base (debian)',
  tools: ['mmdebstrap'],
  applies: (m) => m.base.source === 'debian',
  async run(ctx) {
    const aptCache = path.join(ctx.repo.cacheDir, 'apt-archives');
    mkdirSync(aptCache, { recursive: true });
    await run('mmdebstrap', mmdebstrapArgs(ctx.manifest, ctx.root, aptCache), {
      env: { SOURCE_DATE_EPOCH: String(ctx.epoch), LC_ALL: 'C.UTF-8' },
      signal: ctx.signal,
    });
    return `${ctx.manifest.base.suite ?? 'bookworm'}/${ctx.manifest.base.variant ?? 'minbase'} + ${ctx.manifest.packages?.length ?? 0} packages`;
  },
};
