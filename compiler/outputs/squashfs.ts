import path from 'node:path';
import { run } from '../exec.js';
import type { ImageManifest } from '../manifest/types.js';
import { describeArtifact } from './artifact.js';
import type { Output } from './output.js';

export const SQUASHFS_FILE = 'rootfs.squashfs';

/**
 * zstd level when the manifest sets none, chosen by measurement
 * (docs/outputs.md): on a 203 MiB sample, 3 took 3.3 s; mksquashfs's own
 * default (15) took minutes for 12% fewer bytes. Releases set
 * outputs.squashfs.compression-level.
 */
export const DEFAULT_SQUASHFS_ZSTD_LEVEL = 3;

/** The level the manifest asks for (compression-level, or its older name level), if the compressor takes one. */
export function squashfsLevel(m: ImageManifest): number | undefined {
  const o = m.outputs?.squashfs ?? {};
  const comp = o.compression ?? 'zstd';
  const level = o['compression-level'] ?? o.level;
  // Only zstd (1-22) and gzip (1-9) take a level; mksquashfs refuses -Xcompression-level for xz, lzo and lz4
  // (the schema refuses a level with those, located; this keeps older manifests with `level` building).
  if (comp === 'zstd') return level ?? DEFAULT_SQUASHFS_ZSTD_LEVEL;
  if (comp === 'gzip') return level;
  return undefined;
}

/**
 * mksquashfs argv: fixed times and sorted input make the image byte-for-byte
 * reproducible (-reproducible: the same bytes whatever the number of
 * processors, so mksquashfs uses them all, its default). Its progress bar is
 * off: mksquashfs 4.5 draws it only on a terminal, so treecast's status line
 * shows the bytes it has read and written instead (progress.ts).
 */
export function mksquashfsArgs(m: ImageManifest, tree: string, out: string, epoch: number): string[] {
  const comp = m.outputs?.squashfs?.compression ?? 'zstd';
  // -no-hardlinks: files of equal content are one inode in the hardlink checkout (one repository
  // object), separate files in the commit: stored as separate files (their data still deduplicated).
  const args = [tree, out, '-noappend', '-no-progress', '-quiet', '-no-hardlinks', '-comp', comp];
  const level = squashfsLevel(m);
  if (level !== undefined) args.push('-Xcompression-level', String(level));
  args.push('-reproducible', '-mkfs-time', String(epoch), '-all-time', String(epoch), '-no-xattrs');
  return args;
}

export const squashfs: Output = {
  name: 'squashfs',
  tools: ['mksquashfs'],
  async write(ctx) {
    const out = path.join(ctx.outDir, SQUASHFS_FILE);
    await run('mksquashfs', mksquashfsArgs(ctx.manifest, ctx.tree, out, ctx.epoch), {
      // mksquashfs refuses -mkfs-time/-all-time when SOURCE_DATE_EPOCH is set (SOURCE_DATE_EPOCH=... treecast build):
      // the times are already the build's epoch on the command line.
      env: { SOURCE_DATE_EPOCH: undefined },
      signal: ctx.signal,
      progress: { label: `${ctx.name}: squashfs`, file: out, totalBytes: ctx.treeBytes },
    });
    return [await describeArtifact('squashfs', out)];
  },
};
