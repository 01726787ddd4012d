import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { UserError } from '../diagnostics.js';
import { run } from '../exec.js';
import { hasKernel } from '../manifest/semantic.js';
import type { Package, Step } from './step.js';

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
    ctx.packages = await installedPackages(root);
    const removed = removeSpecialFiles(root);
    for (const d of ['dev', 'proc', 'sys', 'run', 'tmp']) emptyDir(path.join(root, d), d === 'tmp' ? 0o1777 : 0o755);
    const kernels = moveKernels(root);
    const needsKernel = ctx.manifest.outputs?.ostree?.bootable ?? hasKernel(ctx.manifest);
    if (needsKernel && kernels.length === 0) {
      throw new UserError('the image is bootable but has no kernel with an initramfs (/boot/vmlinuz-* and /boot/initrd.img-*): add linux-image-amd64 and an initramfs generator (dracut) to packages');
    }
    // Every host of a fleet would share these otherwise: they are made at first boot.
    for (const f of listDir(path.join(root, 'etc/ssh'))) if (/^ssh_host_.*key/.test(f)) rmSync(path.join(root, 'etc/ssh', f));
    if (existsSync(path.join(root, 'etc'))) writeFileSync(path.join(root, 'etc/machine-id'), '');
    rmSync(path.join(root, 'var/lib/dbus/machine-id'), { force: true });
    moveVarIntoFactory(root);
    moveEtc(root);
    mkdirSync(path.join(root, 'sysroot'), { recursive: true });
    emptyDir(path.join(root, 'sysroot'), 0o755);
    replaceWithLink(root, 'ostree', 'sysroot/ostree');
    return `${ctx.packages.length} packages, ${kernels.length ? `kernel ${kernels.join(', ')}` : 'no kernel'}${removed ? `, ${removed} special files dropped` : ''}`;
  },
};

async function installedPackages(root: string): Promise<Package[]> {
  const admindir = path.join(root, 'var/lib/dpkg');
  if (!existsSync(path.join(admindir, 'status'))) return [];
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

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch {
    return [];
  }
}

/** ostree stores only dirs, regular files and symlinks: drop device nodes, fifos and sockets. */
export function removeSpecialFiles(dir: string): number {
  let n = 0;
  for (const name of listDir(dir)) {
    const p = path.join(dir, name);
    const st = lstatSync(p);
    if (st.isDirectory()) n += removeSpecialFiles(p);
    else if (!st.isFile() && !st.isSymbolicLink()) {
      rmSync(p);
      n++;
    }
  }
  return n;
}

function emptyDir(dir: string, mode: number): void {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  chmodSync(dir, mode);
}

/** /boot/vmlinuz-V and /boot/initrd.img-V -> /usr/lib/modules/V/{vmlinuz,initramfs.img}; returns kernel versions. */
function moveKernels(root: string): string[] {
  const boot = path.join(root, 'boot');
  const versions: string[] = [];
  for (const f of listDir(boot)) {
    const m = /^vmlinuz-(.+)$/.exec(f);
    if (!m) continue;
    const kver = m[1]!;
    const modDir = path.join(root, 'usr/lib/modules', kver);
    const initrd = path.join(boot, `initrd.img-${kver}`);
    if (!existsSync(initrd)) continue;
    mkdirSync(modDir, { recursive: true });
    renameSync(path.join(boot, f), path.join(modDir, 'vmlinuz'));
    renameSync(initrd, path.join(modDir, 'initramfs.img'));
    versions.push(kver);
  }
  // Already in place (an image-derived base keeps them there).
  for (const kver of listDir(path.join(root, 'usr/lib/modules'))) {
    const modDir = path.join(root, 'usr/lib/modules', kver);
    if (!versions.includes(kver) && existsSync(path.join(modDir, 'vmlinuz')) && existsSync(path.join(modDir, 'initramfs.img'))) versions.push(kver);
  }
  if (existsSync(boot)) emptyDir(boot, 0o755);
  for (const f of listDir(root)) if (/^(vmlinuz|initrd\.img)(\.old)?$/.test(f)) rmSync(path.join(root, f), { force: true });
  return versions;
}

/**
 * /var is the host's, not the image's: its content moves to the factory dir
 * and a tmpfiles.d file re-creates it (d) and copies it back (C) at boot.
 * The dirs behind /home, /root, ... go the same way.
 */
function moveVarIntoFactory(root: string): void {
  const varDir = path.join(root, 'var');
  const factory = path.join(root, FACTORY_VAR);
  mkdirSync(varDir, { recursive: true });
  for (const [p, , varName] of VAR_LINKS) {
    const abs = path.join(root, p);
    const st = lstatSync(abs, { throwIfNoEntry: false });
    if (st?.isDirectory()) {
      const dest = path.join(varDir, varName);
      rmSync(dest, { recursive: true, force: true });
      renameSync(abs, dest);
    }
  }
  mkdirSync(factory, { recursive: true });
  const lines = ['# Generated by treecast: /var of the image, re-created on the host at boot.'];
  for (const name of listDir(varDir)) {
    const src = path.join(varDir, name);
    const st = lstatSync(src);
    if (st.isDirectory()) {
      lines.push(`d /var/${name} ${(st.mode & 0o7777).toString(8).padStart(4, '0')} ${st.uid} ${st.gid} -`);
      for (const child of listDir(src)) lines.push(`C /var/${name}/${child} - - - -`);
    } else {
      lines.push(`C /var/${name} - - - -`);
    }
    renameSync(src, path.join(factory, name));
  }
  for (const [p, target, varName] of VAR_LINKS) {
    if (!lines.some((l) => l.startsWith(`d /var/${varName} `))) lines.push(`d /var/${varName} ${varName === 'roothome' ? '0700' : '0755'} 0 0 -`);
    replaceWithLink(root, p, target);
  }
  if (existsSync(path.join(root, 'media')) && !lstatSync(path.join(root, 'media')).isSymbolicLink()) replaceWithLink(root, 'media', 'run/media');
  mkdirSync(path.join(root, path.dirname(TMPFILES)), { recursive: true });
  writeFileSync(path.join(root, TMPFILES), lines.join('\n') + '\n');
}

function replaceWithLink(root: string, p: string, target: string): void {
  const abs = path.join(root, p);
  const st = lstatSync(abs, { throwIfNoEntry: false });
  if (st?.isSymbolicLink()) return;
  if (st) rmSync(abs, { recursive: true, force: true });
  mkdirSync(path.dirname(abs), { recursive: true });
  symlinkSync(target, abs);
}

function moveEtc(root: string): void {
  const etc = path.join(root, 'etc');
  const usrEtc = path.join(root, 'usr/etc');
  if (!existsSync(etc)) return;
  if (existsSync(usrEtc)) throw new UserError('the image has both /etc and /usr/etc; OSTree keeps /etc in /usr/etc, so /usr/etc must not be used');
  mkdirSync(path.join(root, 'usr'), { recursive: true });
  renameSync(etc, usrEtc);
}
