/**
 * The installer layout of the tarball (outputs.tarball.layout: installer): the
 * deployed checkout turned back into the root a plain Debian install has, for
 * tools that unpack a tarball onto a disk and boot it without OSTree
 * (Digital Rebar image-deploy, curtin). It undoes, on a private copy of the
 * checkout, what finalize did for OSTree: the kernel back in /boot, /var's
 * content back from the factory dir, /home & co. real directories again, no
 * /ostree or /sysroot; and it adds the /curtin directory image-deploy requires.
 * Every path goes through compile/rootfs.ts: the copy is image content.
 */
import { UserError } from '../diagnostics.js';
import { FACTORY_VAR, VAR_LINKS } from '../steps/finalize.js';
import {
  lstatIn, mkdirInRoot, readdirIn, readlinkIn, readTextIn, removeInRoot, renameIn, rmdirIn, symlinkIn,
} from '../compile/rootfs.js';
import type { KernelInfo } from './output.js';

const TMPFILES_VAR = '/usr/lib/tmpfiles.d/treecast-var.conf';

/** Rewrite `root` (a private copy of the deployed checkout) into the installer layout. */
export function toInstallerLayout(root: string, kernel: KernelInfo): void {
  // emit moved /usr/etc to /etc when it was a directory; anything left there
  // (a link an image script planted) is not the image's /etc and goes.
  if (lstatIn(root, '/usr/etc')) removeInRoot(root, '/usr/etc');

  // Debian's linux-image packages keep the kernel in /boot, and curtin and
  // grub's update-grub look for it there; /vmlinuz and /initrd.img are the
  // relative links linux-base makes.
  const kver = kernel.version;
  for (const p of [kernel.vmlinuz, kernel.initramfs]) {
    // A link would point elsewhere once moved to /boot; finalize leaves regular files here.
    if (!lstatIn(root, p)?.isFile()) throw new UserError(`${p} in the image is not a regular file (a symlink?): the installer layout moves it to /boot and needs the file itself`);
  }
  if (!lstatIn(root, '/boot')?.isDirectory()) removeInRoot(root, '/boot');
  mkdirInRoot(root, '/boot');
  renameIn(root, kernel.vmlinuz, `/boot/vmlinuz-${kver}`);
  renameIn(root, kernel.initramfs, `/boot/initrd.img-${kver}`);
  symlinkIn(root, '/vmlinuz', `boot/vmlinuz-${kver}`);
  symlinkIn(root, '/initrd.img', `boot/initrd.img-${kver}`);

  restoreVar(root);

  removeInRoot(root, '/ostree');
  if (lstatIn(root, '/sysroot')) removeInRoot(root, '/sysroot');
  // image-deploy: "there must be a base /curtin directory in the image"; its
  // tooling writes the DRP agent and its config there during the install.
  if (!lstatIn(root, '/curtin')?.isDirectory()) removeInRoot(root, '/curtin');
  mkdirInRoot(root, '/curtin', 0o755);
}

/**
 * /var gets its content back from the factory dir, and the directories finalize
 * linked into /var (/home -> var/home, ...) become real directories again with
 * what they held. The tmpfiles.d file that re-created /var at boot goes: on a
 * conventional root /var is the installed one, and its `d /var/home` lines
 * would make OSTree-only directories.
 */
function restoreVar(root: string): void {
  const factory = `/${FACTORY_VAR}`;
  if (!lstatIn(root, '/var')?.isDirectory()) removeInRoot(root, '/var');
  mkdirInRoot(root, '/var');
  if (lstatIn(root, factory)?.isDirectory()) {
    for (const name of readdirIn(root, factory)) {
      removeInRoot(root, `/var/${name}`);
      renameIn(root, `${factory}/${name}`, `/var/${name}`);
    }
    rmdirIn(root, factory);
    // finalize made /usr/share/factory for /var alone unless a package ships more there (systemd's factory/etc).
    if (lstatIn(root, '/usr/share/factory')?.isDirectory() && readdirIn(root, '/usr/share/factory').length === 0) rmdirIn(root, '/usr/share/factory');
  } else if (lstatIn(root, factory)) {
    removeInRoot(root, factory);
  }
  const modes = tmpfilesModes(readTextIn(root, TMPFILES_VAR) ?? '');
  removeInRoot(root, TMPFILES_VAR);
  for (const [p, , varName] of VAR_LINKS) {
    const at = `/${p}`;
    const st = lstatIn(root, at);
    if (st?.isDirectory()) continue; // the image's own directory (not moved by finalize)
    if (st) removeInRoot(root, at);
    if (lstatIn(root, `/var/${varName}`)?.isDirectory()) {
      renameIn(root, `/var/${varName}`, at);
    } else {
      if (lstatIn(root, `/var/${varName}`)) removeInRoot(root, `/var/${varName}`);
      mkdirInRoot(root, at, modes.get(varName) ?? (varName === 'roothome' ? 0o700 : 0o755));
    }
  }
  // finalize made /media a link into /run (OSTree's layout); Debian has a directory.
  if (lstatIn(root, '/media')?.isSymbolicLink() && readlinkIn(root, '/media') === 'run/media') {
    removeInRoot(root, '/media');
    mkdirInRoot(root, '/media');
  }
}

/** The modes finalize's `d /var/<name> MODE ...` lines gave the /var directories. */
function tmpfilesModes(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^d \/var\/([^/\s]+) ([0-7]{4}) /.exec(line);
    if (m) out.set(m[1]!, parseInt(m[2]!, 8));
  }
  return out;
}

export interface DpkgPackage {
  name: string;
  version: string;
  arch: string;
}

/** Installed packages from the root's /var/lib/dpkg/status (read inside the root), sorted by name. */
export function installedPackagesIn(root: string): DpkgPackage[] {
  const text = readTextIn(root, '/var/lib/dpkg/status') ?? '';
  const out: DpkgPackage[] = [];
  for (const para of text.split(/\n\s*\n/)) {
    const field = (k: string) => new RegExp(`^${k}: *(.*)$`, 'm').exec(para)?.[1]?.trim();
    const status = field('Status');
    const name = field('Package');
    if (!name || !status || !/ installed$/.test(status)) continue;
    out.push({ name, version: field('Version') ?? '', arch: field('Architecture') ?? '' });
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
