import path from 'node:path';
import { run } from '../exec.js';
import { describeArtifact } from './artifact.js';
import type { Output } from './output.js';

/** A UUID derived from the commit, so the same commit gives the same bytes. */
export function uuidFromCommit(commit: string): string {
  const h = commit.padEnd(32, '0');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

export const erofs: Output = {
  name: 'erofs',
  tools: ['mkfs.erofs'],
  // mkfs.erofs 1.5 stores hard links as such and has no option against it.
  needsCopiedTree: true,
  async write(ctx) {
    const out = path.join(ctx.outDir, 'rootfs.erofs');
    const comp = ctx.manifest.outputs?.erofs?.compression ?? 'lz4hc';
    const args = [`-T${ctx.epoch}`, `-U${uuidFromCommit(ctx.commit)}`, '--quiet'];
    if (comp !== 'none') args.push(`-z${comp}`);
    // With SOURCE_DATE_EPOCH in its environment mkfs.erofs clamps times instead of fixing them all to -T:
    // other bytes for the same commit. The epoch is on the command line already.
    await run('mkfs.erofs', [...args, out, ctx.tree], { env: { SOURCE_DATE_EPOCH: undefined }, signal: ctx.signal });
    return [await describeArtifact('erofs', out)];
  },
};
