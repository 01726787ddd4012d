import { run } from '../exec.js';
import { tupleArrayVariant } from '../build/ostree.js';
import type { BuildContext } from './step.js';

export interface CommitInfo {
  version: string;
  parent?: string;
  manifestSha256: string;
  inputHash: string;
  gitCommit: string;
}

/** `ostree commit` argv: pure, so tests can check it. The ref is only moved once the commit is complete. */
export function commitArgs(ctx: Pick<BuildContext, 'localRepo' | 'ref' | 'root' | 'epoch' | 'manifest' | 'packages' | 'kernels'>, info: CommitInfo): string[] {
  const meta: Record<string, string> = {
    version: info.version,
    'treecast.name': ctx.manifest.name,
    'treecast.manifest-sha256': info.manifestSha256,
    'treecast.input-hash': info.inputHash,
    'treecast.git-commit': info.gitCommit,
    'treecast.source-date-epoch': String(ctx.epoch),
  };
  for (const [k, v] of Object.entries(ctx.manifest.metadata ?? {})) meta[`treecast.meta.${k}`] = String(v);
  const args = [
    'commit',
    `--repo=${ctx.localRepo}`,
    `--branch=${ctx.ref}`,
    `--tree=dir=${ctx.root}`,
    `--timestamp=@${ctx.epoch}`,
    `--subject=${ctx.manifest.name} ${info.version}`,
    info.parent ? `--parent=${info.parent}` : '--parent=none',
    // Clean up stray xattrs of the build host; ostree keeps mode/owner itself.
    '--no-xattrs',
    // No ostree.ref-binding: a promotion points stream refs (stable, ...) at this very
    // commit, and clients refuse a commit under a ref it is not bound to. Which refs
    // may carry it is the signed summary's business (SECURITY.md).
    '--no-bindings',
    '--generate-sizes',
  ];
  // ostree.bootable and ostree.linux (the kernel version), which ostree, bootc and their tooling read.
  if (ctx.kernels?.length) args.push('--bootable');
  // Not --link-checkout-speedup: with --no-xattrs ostree 2022.7 reads and
  // hashes every file anyway (strace: 105,722 reads either way, 73 without
  // --no-xattrs), so its scan of every loose object would only add time.
  // docs/layers.md has the numbers and the way forward.
  for (const [k, v] of Object.entries(meta)) args.push(`--add-metadata-string=${k}=${v}`);
  args.push(`--add-metadata=treecast.packages=${tupleArrayVariant(ctx.packages.map((p) => [p.name, p.version, p.arch]), 3)}`);
  return args;
}

export async function commitTree(ctx: BuildContext, info: CommitInfo): Promise<string> {
  const r = await run('ostree', commitArgs(ctx, info), { signal: ctx.signal });
  return r.stdout.trim();
}
