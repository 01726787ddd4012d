import { CommandError, run } from '../exec.js';
import { UserError, type Diagnostic } from '../diagnostics.js';
import { locate } from '../manifest/schema.js';
import type { BuildContext, Step } from './step.js';

/**
 * packages on an image-derived base: apt inside the image root. (With a
 * debian base, mmdebstrap installs them together with the base.) This is the
 * one sandboxed run that keeps the network: apt must reach the archive.
 */
export const packagesOnImage: Step = {
  name: 'packages',
  tools: ['bwrap'],
  applies: (m) => m.base.source === 'image' && (m.packages?.length ?? 0) > 0,
  async run(ctx) {
    const pkgs = ctx.manifest.packages!;
    const script = 'apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" && apt-get clean && rm -rf /var/lib/apt/lists/*';
    await run('bwrap', [...sandboxArgs(ctx.root, { network: true }), '/bin/sh', '-ec', script, 'sh', ...pkgs], { signal: ctx.signal, env: { SOURCE_DATE_EPOCH: String(ctx.epoch) } }).catch((err) => {
      throw unknownPackages(ctx, err);
    });
    return `${pkgs.length} packages`;
  },
};

/** bubblewrap argv that runs a command with `root` as /, in its own namespaces. */
export function sandboxArgs(root: string, opts: { network: boolean }): string[] {
  const args = [
    '--bind', root, '/',
    '--dev', '/dev',
    '--proc', '/proc',
    '--tmpfs', '/tmp',
    '--tmpfs', '/run',
    '--unshare-pid', '--unshare-ipc', '--unshare-uts', '--unshare-cgroup-try',
    '--die-with-parent',
    '--hostname', 'treecast-build',
    '--setenv', 'PATH', '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    '--setenv', 'HOME', '/root',
    '--setenv', 'LC_ALL', 'C.UTF-8',
    '--chdir', '/',
  ];
  if (opts.network) args.push('--ro-bind', '/etc/resolv.conf', '/etc/resolv.conf');
  else args.push('--unshare-net');
  return args;
}

/**
 * apt names a package it cannot find only deep inside its output. Point at the
 * manifest entry instead, the way validation would, so the fix is obvious.
 * Any other failure is passed through unchanged.
 */
export function unknownPackages(ctx: Pick<BuildContext, 'manifest' | 'image'>, err: unknown): unknown {
  if (!(err instanceof CommandError)) return err;
  const missing = [...err.stderr.matchAll(/Unable to locate package (\S+)/g)].map((m) => m[1]!);
  const pkgs = ctx.manifest.packages ?? [];
  const diagnostics: Diagnostic[] = [];
  for (const name of new Set(missing)) {
    const i = pkgs.indexOf(name);
    if (i < 0) continue;
    diagnostics.push({ loc: locate(ctx.image.root, ['packages', i]), path: `packages[${i}]`, message: `the archive has no package "${name}"`, hint: 'check the name with `apt-cache search` or the suite and components under base' });
  }
  if (!diagnostics.length) return err;
  return new UserError(`${diagnostics.length === 1 ? 'a package' : `${diagnostics.length} packages`} could not be found (apt: "Unable to locate package")`, diagnostics);
}
