import path from 'node:path';
import { run } from '../exec.js';
import { removeHostFile, renameHostFile } from '../build/host-files.js';
import type { ImageManifest } from '../manifest/types.js';
import { describeArtifact } from './artifact.js';
import type { Output } from './output.js';

const EXT = { zstd: 'tar.zst', gzip: 'tgz', xz: 'tar.xz', none: 'tar' } as const;

export function tarballFile(m: ImageManifest): string {
  return `rootfs.${EXT[m.outputs?.tarball?.compression ?? 'zstd']}`;
}

/** GNU tar argv: sorted names, numeric owners, one mtime, no atime/ctime: reproducible bytes. */
export function tarArgs(tree: string, out: string, epoch: number): string[] {
  return [
    '--create', `--file=${out}`, `--directory=${tree}`,
    '--sort=name', '--numeric-owner', `--mtime=@${epoch}`,
    '--format=posix', '--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime',
    '--xattrs', '--acls', '--one-file-system',
    '.',
  ];
}

/** Compressor argv. Single-threaded xz and gzip -n: their output must not depend on the machine or the time. */
export function compressArgs(compression: 'zstd' | 'gzip' | 'xz', file: string): [string, string[]] {
  switch (compression) {
    case 'zstd':
      return ['zstd', ['-q', '-T0', '-12', '--rm', '-f', file, '-o', `${file}.zst`]];
    case 'gzip':
      return ['gzip', ['-n', '-6', '-f', file]];
    case 'xz':
      return ['xz', ['-T1', '-6', '-f', file]];
  }
}

export const tarball: Output = {
  name: 'tarball',
  tools: ['tar'],
  async write(ctx) {
    const compression = ctx.manifest.outputs?.tarball?.compression ?? 'zstd';
    const final = path.join(ctx.outDir, tarballFile(ctx.manifest));
    const tar = path.join(ctx.outDir, '.rootfs.tar');
    await run('tar', tarArgs(ctx.tree, tar, ctx.epoch), { signal: ctx.signal });
    if (compression === 'none') {
      renameHostFile(tar, final);
    } else {
      const [cmd, args] = compressArgs(compression, tar);
      await run(cmd, args, { signal: ctx.signal });
      const produced = compression === 'zstd' ? `${tar}.zst` : compression === 'gzip' ? `${tar}.gz` : `${tar}.xz`;
      renameHostFile(produced, final);
      removeHostFile(tar);
    }
    return [await describeArtifact('tarball', final)];
  },
};
