import path from 'node:path';
import { copyFileOut } from '../compile/rootfs.js';
import { writeHostFile } from '../compile/host-files.js';
import { UserError } from '../diagnostics.js';
import type { ImageManifest } from '../manifest/types.js';
import { describeArtifact } from './artifact.js';
import type { KernelInfo, Output } from './output.js';
import { SQUASHFS_FILE } from './squashfs.js';
import { ENCRYPTED_SQUASHFS_FILE, privateKeyUrl } from '../compile/encrypt.js';

export interface DisklessBoot {
  kernelUrl: string;
  initrdUrl: string;
  squashfsUrl: string;
  args: string[];
}

/**
 * Kernel arguments that make the image's initramfs fetch the squashfs root
 * over HTTP and boot it: dracut's livenet (root=live:URL) or Debian
 * live-boot (boot=live fetch=URL), whichever the image has installed.
 */
export function disklessKernelArgs(m: ImageManifest, flavor: KernelInfo['flavor'], squashfsUrl: string, commit: string, version: string): string[] {
  let fetch: string[];
  if (flavor === 'dracut') {
    // network-legacy + ip=dhcp: with systemd-networkd in the initrd livenet never fetches (docs/boot-recipes.md)
    fetch = [`root=live:${squashfsUrl}`, 'rd.live.image', 'rd.live.overlay.overlayfs=1', 'ip=dhcp', 'rd.neednet=1'];
  } else if (flavor === 'live-boot') {
    fetch = ['boot=live', `fetch=${squashfsUrl}`];
  } else {
    throw new UserError('the image has neither dracut (with dracut-live) nor live-boot installed, so its initramfs cannot fetch a squashfs root');
  }
  return [...fetch, ...(m['kernel-args'] ?? []), ...(m.outputs?.diskless?.['kernel-args'] ?? []), `treecast.commit=${commit}`, `treecast.version=${version}`];
}

/** The iPXE script a node chain-loads; URLs are absolute (from the public URL). */
export function renderIpxe(name: string, version: string, commit: string, boot: DisklessBoot): string {
  return [
    '#!ipxe',
    `# treecast diskless boot: ${name} ${version} (commit ${commit})`,
    `kernel ${boot.kernelUrl} initrd=initrd.img ${boot.args.join(' ')}`,
    `initrd ${boot.initrdUrl}`,
    'boot',
    '',
  ].join('\n');
}

export function versionUrl(publicUrl: string, name: string, version: string): string {
  return `${publicUrl}/images/${encodeURIComponent(name)}/${encodeURIComponent(version)}`;
}

/** iPXE expands this setting when it runs the script: each node's token, provisioned on the node (docs/nodes.md). */
export const TOKEN_ARG = 'treecast.token=${treecast-token}';

export function disklessBoot(m: ImageManifest, kernel: KernelInfo, publicUrl: string, commit: string, version: string): DisklessBoot {
  const base = versionUrl(publicUrl, m.name, version);
  const encrypted = m.outputs?.diskless?.encrypt === true;
  if (encrypted && kernel.flavor !== 'dracut') throw new UserError(`${m.name}: an encrypted diskless root needs dracut in the image (its treecast-node module opens the root); the image's initramfs is ${kernel.flavor}`);
  // An encrypted root's URL stays a plain http URL for dracut's livenet and its systemd generator;
  // treecast.key= makes the treecast-node dracut module fetch, decrypt and check it instead.
  const squashfsUrl = `${base}/${encrypted ? ENCRYPTED_SQUASHFS_FILE : SQUASHFS_FILE}`;
  const args = disklessKernelArgs(m, kernel.flavor, squashfsUrl, commit, version);
  if (encrypted) args.push(`treecast.key=${privateKeyUrl(publicUrl, m.name, version)}`, TOKEN_ARG);
  return { kernelUrl: `${base}/vmlinuz`, initrdUrl: `${base}/initrd.img`, squashfsUrl, args };
}

/** vmlinuz + initrd.img next to the squashfs, and a boot.ipxe for the configured public URL (publish re-renders it). */
export function disklessOutput(publicUrl: string): Output {
  return {
    name: 'diskless',
    tools: [],
    after: ['squashfs'],
    needsKernel: true,
    async write(ctx) {
      const k = ctx.kernel!;
      const vmlinuz = path.join(ctx.outDir, 'vmlinuz');
      const initrd = path.join(ctx.outDir, 'initrd.img');
      // Read inside the checkout (a link there never leads to a host file), written 0644:
      // Debian's dracut writes the initramfs 0600, and a web server not running as root must read it.
      copyFileOut(ctx.tree, k.vmlinuz, vmlinuz, 0o644);
      copyFileOut(ctx.tree, k.initramfs, initrd, 0o644);
      const ipxe = path.join(ctx.outDir, 'boot.ipxe');
      writeHostFile(ipxe, renderIpxe(ctx.name, ctx.version, ctx.commit, disklessBoot(ctx.manifest, k, publicUrl, ctx.commit, ctx.version)));
      return Promise.all([describeArtifact('kernel', vmlinuz), describeArtifact('initrd', initrd), describeArtifact('ipxe', ipxe)]);
    },
  };
}
