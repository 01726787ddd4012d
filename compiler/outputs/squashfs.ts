import path from 'node:path';
import { availableParallelism } from 'node:os';
import { run } from '../exec.js';
import type { ImageManifest } from '../manifest/types.js';
import { describeArtifact } from './artifact.js';
import type { Output } from './output.js';

export const SQUASHFS_FILE = 'rootfs.squashfs';

/** mksquashfs argv: fixed times and sorted input make the image byte-for-byte reproducible. */
export function mksquashfsArgs(m: ImageManifest, tree: string, out: string, epoch: number): string[] {
  const o = m.outputs?.squashfs ?? {};
  const comp = o.compression ?? 'zstd';
  const args = [tree, out, '-noappend', '-no-progress', '-quiet', '-comp', comp];
  // Only zstd (1-22) and gzip (1-9) take a level; mksquashfs refuses -Xcompression-level for xz, lzo and lz4.
  if (o.level !== undefined && (comp === 'zstd' || comp === 'gzip')) args.push('-Xcompression-level', String(o.level));
  args.push('-reproducible', '-mkfs-time', String(epoch), '-all-time', String(epoch), '-no-xattrs', '-processors', String(availableParallelism()));
  return args;
}

export const squashfs: Output = {
  name: 'squashfs',
  tools: ['mksquashfs'],
  async write(ctx) {
    const out = path.join(ctx.outDir, SQUASHFS_FILE);
    await run('mksquashfs', mksquashfsArgs(ctx.manifest, ctx.tree, out, ctx.epoch), { signal: ctx.signal });
    return [await describeArtifact('squashfs', out)];
  },
};
