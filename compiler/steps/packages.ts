import { run } from '../exec.js';
import type { Step } from './step.js';

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
    await run('bwrap', [...sandboxArgs(ctx.root, { network: true }), '/bin/sh', '-ec', script, 'sh', ...pkgs], { signal: ctx.signal, env: { SOURCE_DATE_EPOCH: String(ctx.epoch) } });
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
