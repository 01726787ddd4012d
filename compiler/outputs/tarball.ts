import path from 'node:path';
import { run, runPipe } from '../exec.js';
import { renameHostFile, writeHostFile } from '../compile/host-files.js';
import { removeRootDir } from '../compile/rootfs.js';
import { UserError } from '../diagnostics.js';
import type { ImageManifest } from '../manifest/types.js';
import { describeArtifact } from './artifact.js';
import { installedPackagesIn, toInstallerLayout } from './installer-layout.js';
import type { Artifact, OutputContext, Output } from './output.js';

const EXT = { zstd: 'tar.zst', gzip: 'tgz', xz: 'tar.xz', none: 'tar' } as const;
/** The installer tarball's suffixes: tgz, txz and tar are image-deploy's (and curtin's) source types of the same names. */
const INSTALLER_EXT = { zstd: 'tar.zst', gzip: 'tgz', xz: 'txz', none: 'tar' } as const;
const IMAGE_TYPE = { gzip: 'tgz', xz: 'txz', none: 'tar' } as const;

export type TarCompression = keyof typeof EXT;

/**
 * Levels when the manifest sets none, chosen by measurement (docs/outputs.md,
 * bench/compression-levels.ts): zstd 3 took 3.4 s on a 203 MiB sample, 12
 * (the old default) over a minute for 10% fewer bytes; 3 suits the
 * edit-build-boot loop, and releases set
 * outputs.tarball.compression-level. gzip 6 and xz 6 are their tools' defaults.
 */
export const DEFAULT_TAR_LEVEL = { zstd: 3, gzip: 6, xz: 6 } as const;

/**
 * rootfs.<ext> for the OSTree layout (one per version directory, as always);
 * <name>-<version>-installer.<ext> for the installer layout, a name that stays
 * unique and says what it is once uploaded into a flat file store (Digital
 * Rebar's files/images/).
 */
export function tarballFile(m: ImageManifest, version = ''): string {
  const c = m.outputs?.tarball?.compression ?? 'zstd';
  return m.outputs?.tarball?.layout === 'installer' ? `${m.name}-${version}-installer.${INSTALLER_EXT[c]}` : `rootfs.${EXT[c]}`;
}

/** The text MANIFEST written beside an installer tarball (image-builder uploads one with each image). */
export function installerManifestFile(m: ImageManifest, version: string): string {
  return `${m.name}-${version}-MANIFEST.txt`;
}

/**
 * GNU tar argv: sorted names, numeric owners, one mtime, no atime/ctime: reproducible bytes. `out` is `-` for stdout.
 * --hard-dereference: the checkout shares one inode among files of equal content (hard links to
 * one repository object); the commit's tree has separate files, and so does the tarball.
 */
export function tarArgs(tree: string, out: string, epoch: number): string[] {
  return [
    '--create', `--file=${out}`, `--directory=${tree}`,
    '--sort=name', '--numeric-owner', `--mtime=@${epoch}`, '--hard-dereference',
    '--format=posix', '--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime',
    '--xattrs', '--acls', '--one-file-system',
    '.',
  ];
}

/**
 * Compressor argv, stdin to stdout. Its output must not depend on the machine
 * or the time: gzip -n leaves out name and time; xz runs single-threaded
 * (xz -T0 splits into blocks by thread count). zstd -T0 is safe: zstd's
 * multi-threaded output depends on the level and the version, not on the
 * number of workers (checked with -T1/-T2/-T0 by bench/compression-levels.ts;
 * only --single-thread, which we do not use, gives other bytes).
 */
export function compressArgs(compression: Exclude<TarCompression, 'none'>, level?: number): [string, string[]] {
  switch (compression) {
    case 'zstd':
      return ['zstd', ['-q', '-T0', `-${level ?? DEFAULT_TAR_LEVEL.zstd}`, '-c']];
    case 'gzip':
      return ['gzip', ['-n', `-${level ?? DEFAULT_TAR_LEVEL.gzip}`, '-c']];
    case 'xz':
      return ['xz', ['-T1', `-${level ?? DEFAULT_TAR_LEVEL.xz}`, '-c']];
  }
}

export const tarball: Output = {
  name: 'tarball',
  tools: ['tar', 'cp'],
  async write(ctx) {
    if (ctx.manifest.outputs?.tarball?.layout !== 'installer') return [await writeTarball(ctx, ctx.tree)];
    const kernel = ctx.kernel;
    if (!kernel) {
      throw new UserError(`outputs.tarball.layout "installer" of image ${ctx.name} needs a kernel and an initramfs in /usr/lib/modules/<version>/ to put in /boot, and the image has none (add linux-image-amd64 and an initramfs generator to packages)`);
    }
    // The checkout is shared, read-only, by the outputs writing in parallel:
    // the layout is made on a private copy beside it, in the checkout's own
    // scratch directory that emit removes with it (cp -a: links stay links,
    // owners, modes and xattrs kept; reflinks where the file system has them).
    const root = path.join(path.dirname(ctx.tree), 'installer-root');
    removeRootDir(root);
    try {
      await run('cp', ['-a', '--reflink=auto', '--', ctx.tree, root], { signal: ctx.signal, progress: { label: `${ctx.name}: installer copy` } });
      toInstallerLayout(root, kernel);
      const art = await writeTarball(ctx, root);
      const manifest = path.join(ctx.outDir, installerManifestFile(ctx.manifest, ctx.version));
      writeHostFile(manifest, installerManifest(ctx, art, kernel.version, installedPackagesIn(root)));
      return [art, await describeArtifact('tarball-manifest', manifest)];
    } finally {
      removeRootDir(root);
    }
  },
};

/** The MANIFEST text: what the tarball is, for the operator who picks it and the image-deploy profile that names it. */
function installerManifest(ctx: OutputContext, art: Artifact, kver: string, packages: { name: string; version: string; arch: string }[]): string {
  const compression = ctx.manifest.outputs?.tarball?.compression ?? 'zstd';
  const type = compression === 'zstd' ? undefined : IMAGE_TYPE[compression];
  const lines = [
    `image: ${ctx.name}`,
    `version: ${ctx.version}`,
    `commit: ${ctx.commit}`,
    `build-time: ${new Date(ctx.epoch * 1000).toISOString()}`,
    `kernel: ${kver}`,
    `layout: installer`,
    `tarball: ${art.file}`,
    `compression: ${compression}`,
    ...(type ? [`image-type: ${type}`] : []),
    `size: ${art.size}`,
    `sha256: ${art.sha256}`,
    `packages: ${packages.length}`,
    ...packages.map((p) => `  ${p.name} ${p.version} ${p.arch}`),
  ];
  return lines.join('\n') + '\n';
}

async function writeTarball(ctx: OutputContext, tree: string): Promise<Artifact> {
  const o = ctx.manifest.outputs?.tarball ?? {};
  const compression = o.compression ?? 'zstd';
  const final = path.join(ctx.outDir, tarballFile(ctx.manifest, ctx.version));
  // Written under a dot name and renamed when complete: a killed or failed
  // pipe never leaves a file that looks like a finished artifact.
  const partial = path.join(ctx.outDir, `.${path.basename(final)}.partial`);
  const progress = { label: `${ctx.name}: tarball`, file: partial, totalBytes: ctx.treeBytes };
  if (compression === 'none') {
    await run('tar', tarArgs(tree, partial, ctx.epoch), { signal: ctx.signal, progress });
  } else {
    // tar | compressor straight into the file: no uncompressed copy on disk.
    await runPipe(['tar', tarArgs(tree, '-', ctx.epoch)], compressArgs(compression, o['compression-level']), { stdoutFile: partial, signal: ctx.signal, progress });
  }
  renameHostFile(partial, final);
  return describeArtifact('tarball', final);
}
