import path from 'node:path';
import { UserError } from '../diagnostics.js';
import { run } from '../exec.js';
import { hasKernel } from '../manifest/semantic.js';
import {
  emptyDirIn, isDirIn, isFileIn, lstatIn, mkdirInRoot, readdirIn, readFileIn, readTextIn, removeInRoot,
  removeSpecialFilesIn, renameIn, replaceWithLinkIn, writeFileIn,
} from '../compile/rootfs.js';
import { ensureDir, writeHostFile } from '../compile/host-files.js';
import type { Package, Step } from './step.js';
import { accountsForUpgrades } from './users.js';

/** Where /var's content goes: systemd-tmpfiles `C` lines copy it back on first boot. */
export const FACTORY_VAR = 'usr/share/factory/var';
const TMPFILES = 'usr/lib/tmpfiles.d/treecast-var.conf';

/** Top-level directories that live in /var on an OSTree host, and their link targets. */
export const VAR_LINKS: [string, string, string][] = [
  // [path, symlink target, /var directory it stands for]
  ['home', 'var/home', 'home'],
  ['root', 'var/roothome', 'roothome'],
  ['opt', 'var/opt', 'opt'],
  ['srv', 'var/srv', 'srv'],
  ['mnt', 'var/mnt', 'mnt'],
  ['usr/local', '../var/usrlocal', 'usrlocal'],
];

/**
 * finalize: make the tree "ostree-ready" (see docs/design.md): only dirs,
 * files and symlinks; API filesystems empty; kernel and initramfs under
 * /usr/lib/modules/$kver; /etc in /usr/etc; /var empty and re-created at
 * boot by tmpfiles.d; home & co. as links into /var; empty machine-id.
 * rpm-ostree's composepost and deb-ostree-builder do the same.
 */
export const finalize: Step = {
  name: 'finalize',
  tools: ['dpkg-query'],
  applies: () => true,
  async run(ctx) {
    const root = ctx.root;
    ctx.packages = await installedPackages(root, ctx.workDir);
    const removed = removeSpecialFilesIn(root);
    for (const d of ['dev', 'proc', 'sys', 'run', 'tmp']) emptyDirIn(root, `/${d}`, d === 'tmp' ? 0o1777 : 0o755);
    const kernels = moveKernels(root);
    ctx.kernels = kernels;
    const needsKernel = ctx.manifest.outputs?.ostree?.bootable ?? hasKernel(ctx.manifest);
    if (needsKernel && kernels.length === 0) {
      throw new UserError('the image is bootable but has no kernel with an initramfs (/boot/vmlinuz-* and /boot/initrd.img-*): add linux-image-amd64 and an initramfs generator (dracut) to packages');
    }
    if (ctx.version) stampOsRelease(root, ctx.manifest.name, ctx.version);
    const accounts = accountsForUpgrades(ctx);
    // Every host of a fleet would share these otherwise: they are made at first boot.
    for (const f of readdirIn(root, '/etc/ssh')) if (/^ssh_host_.*key/.test(f)) removeInRoot(root, `/etc/ssh/${f}`);
    if (isDirIn(root, '/etc')) writeFileIn(root, '/etc/machine-id', '', { mode: 0o444 });
    removeInRoot(root, '/var/lib/dbus/machine-id');
    moveVarIntoFactory(root);
    moveEtc(root);
    emptyDirIn(root, '/sysroot', 0o755);
    replaceWithLinkIn(root, '/ostree', 'sysroot/ostree');
    return `${ctx.packages.length} packages, ${kernels.length ? `kernel ${kernels.join(', ')}` : 'no kernel'}${removed ? `, ${removed} special files dropped` : ''}${accounts ? `, ${accounts}` : ''}`;
  },
};

/**
 * The dpkg database, read by dpkg-query from a copy: the image's
 * /var/lib/dpkg/status may be a link planted by a script, and dpkg-query would
 * follow it on the host.
 */
async function installedPackages(root: string, workDir: string): Promise<Package[]> {
  if (!isFileIn(root, '/var/lib/dpkg/status')) return [];
  const admindir = path.join(workDir, 'dpkg-admindir');
  ensureDir(path.join(admindir, 'updates'));
  writeHostFile(path.join(admindir, 'status'), readFileIn(root, '/var/lib/dpkg/status'));
  const r = await run('dpkg-query', [`--admindir=${admindir}`, '-W', '-f=${db:Status-Abbrev}\t${Package}\t${Version}\t${Architecture}\n']);
  return r.stdout
    .split('\n')
    .filter((l) => l.startsWith('ii'))
    .map((l) => {
      const [, name, version, arch] = l.split('\t');
      return { name: name!, version: version!, arch: arch! };
    })
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * IMAGE_ID and IMAGE_VERSION in /usr/lib/os-release (os-release(5)): what a
 * host, its inventory and its support tools report it runs. Only an image
 * that has an os-release gets them (ostree admin deploy needs one anyway).
 */
export function stampOsRelease(root: string, name: string, version: string): void {
  const text = readTextIn(root, '/usr/lib/os-release');
  if (text === undefined) return;
  const kept = withoutImageStamp(text).split('\n').filter((l) => l.trim() !== '');
  writeFileIn(root, '/usr/lib/os-release', [...kept, `IMAGE_ID=${name}`, `IMAGE_VERSION=${version}`, ''].join('\n'), { mode: 0o644, uid: 0, gid: 0 });
}

/** os-release without the lines stampOsRelease writes (a base image's stamp, or this image's previous one). */
export function withoutImageStamp(text: string): string {
  return text
    .split('\n')
    .filter((l) => !/^(IMAGE_ID|IMAGE_VERSION)=/.test(l))
    .join('\n');
}

/** /boot/vmlinuz-V and /boot/initrd.img-V -> /usr/lib/modules/V/{vmlinuz,initramfs.img}; returns kernel versions. */
function moveKernels(root: string): string[] {
  const versions: string[] = [];
  for (const f of readdirIn(root, '/boot')) {
    const m = /^vmlinuz-(.+)$/.exec(f);
    if (!m) continue;
    const kver = m[1]!;
    if (kver.includes('/') || kver === '..' || !isFileIn(root, `/boot/initrd.img-${kver}`)) continue;
    const modDir = `/usr/lib/modules/${kver}`;
    mkdirInRoot(root, modDir);
    renameIn(root, `/boot/${f}`, `${modDir}/vmlinuz`);
    renameIn(root, `/boot/initrd.img-${kver}`, `${modDir}/initramfs.img`);
    versions.push(kver);
  }
  // Already in place (an image-derived base keeps them there).
  for (const kver of readdirIn(root, '/usr/lib/modules')) {
    const modDir = `/usr/lib/modules/${kver}`;
    if (!versions.includes(kver) && isFileIn(root, `${modDir}/vmlinuz`) && isFileIn(root, `${modDir}/initramfs.img`)) versions.push(kver);
  }
  if (lstatIn(root, '/boot')) emptyDirIn(root, '/boot', 0o755);
  for (const f of readdirIn(root, '/')) if (/^(vmlinuz|initrd\.img)(\.old)?$/.test(f)) removeInRoot(root, `/${f}`);
  checkOneKernel(root, versions);
  return versions;
}

/**
 * ostree (commit --bootable, admin deploy) takes every /usr/lib/modules/<dir>/vmlinuz for a
 * kernel, whatever its type, and refuses a tree with more than one. Say so here, naming the
 * entry, rather than let the commit fail with ostree's bare "Multiple kernels found".
 */
function checkOneKernel(root: string, kernels: string[]): void {
  for (const kver of readdirIn(root, '/usr/lib/modules')) {
    const at = `/usr/lib/modules/${kver}/vmlinuz`;
    if (kernels.includes(kver) || !lstatIn(root, at)) continue;
    const what = lstatIn(root, at)!.isSymbolicLink() ? 'a symlink' : isFileIn(root, at) ? 'a kernel without initramfs.img beside it' : 'not a regular file';
    throw new UserError(`${at} is ${what}: ostree takes every /usr/lib/modules/*/vmlinuz for a kernel and a commit may hold only one; remove it`);
  }
  if (kernels.length > 1) {
    throw new UserError(`the image holds ${kernels.length} kernels (${kernels.join(', ')}): an ostree commit boots exactly one; remove all but one (e.g. purge the older linux-image package in postprocess)`);
  }
}

/**
 * /var is the host's, not the image's: its content moves to the factory dir
 * and a tmpfiles.d file re-creates it (d) and copies it back (C) at boot.
 * The dirs behind /home, /root, ... go the same way.
 */
function moveVarIntoFactory(root: string): void {
  const factory = `/${FACTORY_VAR}`;
  if (!isDirIn(root, '/var') || lstatIn(root, '/var')?.isSymbolicLink()) {
    removeInRoot(root, '/var');
    mkdirInRoot(root, '/var');
  }
  for (const [p, , varName] of VAR_LINKS) {
    if (lstatIn(root, `/${p}`)?.isDirectory()) {
      removeInRoot(root, `/var/${varName}`);
      renameIn(root, `/${p}`, `/var/${varName}`);
    }
  }
  mkdirInRoot(root, factory);
  const lines = ['# Generated by treecast: /var of the image, re-created on the host at boot.'];
  for (const name of readdirIn(root, '/var')) {
    const st = lstatIn(root, `/var/${name}`)!;
    if (st.isDirectory()) {
      lines.push(`d /var/${name} ${(st.mode & 0o7777).toString(8).padStart(4, '0')} ${st.uid} ${st.gid} -`);
      for (const child of readdirIn(root, `/var/${name}`)) lines.push(`C /var/${name}/${child} - - - -`);
    } else {
      lines.push(`C /var/${name} - - - -`);
    }
    renameIn(root, `/var/${name}`, `${factory}/${name}`);
  }
  for (const [p, target, varName] of VAR_LINKS) {
    if (!lines.some((l) => l.startsWith(`d /var/${varName} `))) lines.push(`d /var/${varName} ${varName === 'roothome' ? '0700' : '0755'} 0 0 -`);
    replaceWithLinkIn(root, `/${p}`, target);
  }
  if (lstatIn(root, '/media')) replaceWithLinkIn(root, '/media', 'run/media');
  writeFileIn(root, `/${TMPFILES}`, lines.join('\n') + '\n');
}

function moveEtc(root: string): void {
  if (!lstatIn(root, '/etc')) return;
  if (lstatIn(root, '/usr/etc')) throw new UserError('the image has both /etc and /usr/etc; OSTree keeps /etc in /usr/etc, so /usr/etc must not be used');
  if (!lstatIn(root, '/etc')!.isDirectory()) throw new UserError('/etc in the image is not a directory (a symlink?): OSTree needs a real /etc to move to /usr/etc');
  renameIn(root, '/etc', '/usr/etc');
}
