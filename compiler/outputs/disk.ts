/**
 * outputs.disk: a disk image a machine boots from its firmware (BIOS through
 * SeaBIOS or real hardware), holding an OSTree sysroot with the image deployed
 * from the build repository, its origin set to the *published* remote so the
 * host upgrades itself from the HTTP tree (`ostree admin upgrade`).
 *
 * Layout: an MBR partition table with one bootable ext4 partition at 1 MiB
 * holding the whole sysroot (/boot is a directory on it). The bootloader is
 * extlinux, because ostree keeps it current itself: with sysroot.bootloader=
 * syslinux every deploy/upgrade rewrites /boot/loader/syslinux.cfg, which
 * /boot/syslinux/syslinux.cfg links to, and bootprefix=true makes its paths
 * valid from the partition's root. GRUB was tried first: Debian's grub has no
 * blscfg and its syslinux_source produced an empty menu from ostree's file.
 *
 * The file system is made without mounting (mkfs.ext4 -d at an offset inside
 * the image); only `extlinux --install`, which must write through a mounted
 * file system, loop-mounts the partition for a moment.
 */
import path from 'node:path';
import { ensureDir, hostPathExists, removeHostFile, writeHostFile } from '../compile/host-files.js';
import { UserError } from '../diagnostics.js';
import { run } from '../exec.js';
import { exportPublicKey } from '../publish/gpg.js';
import type { ImageManifest } from '../manifest/types.js';
import { describeArtifact } from './artifact.js';
import type { Output, OutputContext } from './output.js';

export const DISK_FILE = 'disk.raw';
const MIB = 1024 * 1024;
/** The partition starts at 1 MiB: the usual alignment, and room for the MBR. */
const PART_OFFSET = MIB;
/** extlinux's MBR code (boots the active partition's boot sector, where extlinux --install puts its loader). */
const MBR_BIN = '/usr/lib/EXTLINUX/mbr.bin';
/**
 * ext4 features extlinux 6.04 and older bootloaders cannot read: 64bit (extlinux
 * cannot map its ldlinux.sys), and e2fsprogs 1.47's new orphan_file and
 * metadata_csum_seed (GRUB 2.06 and older kernels' fsck refuse them).
 */
const EXT4_FEATURES = '^64bit,^orphan_file,^metadata_csum_seed';

export interface DiskRemote {
  /** The public URL of the publish tree; the host's remote is <url>/repo. */
  publicUrl: string;
  remote: string;
  /** Signing configured in treecast.yaml: the host verifies commits with this key. */
  signing?: { keyId: string; homedir: string };
}

/** A size such as 4G or 3072M, in bytes. */
export function parseSize(s: string): number {
  const m = /^([1-9][0-9]*)([MG])$/.exec(s);
  if (!m) throw new UserError(`outputs.disk.size "${s}" is not a size such as 4G or 3072M`);
  return Number(m[1]) * (m[2] === 'G' ? 1024 : 1) * MIB;
}

/**
 * The disk's size: the manifest's, or room for the sysroot twice (the
 * deployed commit and a whole new one during an upgrade) plus 1 GiB, rounded
 * up to 256 MiB; never below 2 GiB.
 */
export function diskSize(m: ImageManifest, sysrootBytes: number): number {
  const asked = m.outputs?.disk?.size;
  if (asked) {
    const bytes = parseSize(asked);
    if (bytes < sysrootBytes + PART_OFFSET + 64 * MIB) {
      throw new UserError(`outputs.disk.size ${asked} is too small for image ${m.name}: its sysroot alone takes ${Math.ceil(sysrootBytes / MIB)} MiB (leave room for an upgrade: about twice that)`);
    }
    return bytes;
  }
  const want = 2 * sysrootBytes + 1024 * MIB;
  return Math.max(2048 * MIB, Math.ceil(want / (256 * MIB)) * 256 * MIB);
}

/** The kernel command line of the deployment: the root file system by UUID, then the image's arguments. */
export function diskKernelArgs(m: ImageManifest, fsUuid: string): string[] {
  return [`root=UUID=${fsUuid}`, 'rw', ...(m['kernel-args'] ?? []), ...(m.outputs?.disk?.['kernel-args'] ?? [])];
}

/** A file system UUID derived from the commit: the same commit gives the same UUID (and kernel command line). */
export function fsUuidFor(commit: string): string {
  const h = commit.slice(0, 32);
  // Version 4 / variant 1 bits, so tools that check them accept it.
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-${((parseInt(h[16]!, 16) & 3) | 8).toString(16)}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** sfdisk script: DOS label (id from the commit), one bootable Linux partition from 1 MiB to the end. */
export function partitionTable(commit: string): string {
  return `label: dos\nlabel-id: 0x${commit.slice(0, 8)}\nunit: sectors\n\nstart=${PART_OFFSET / 512}, type=83, bootable\n`;
}

export function diskOutput(remote: DiskRemote): Output {
  return {
    name: 'disk',
    tools: ['ostree', 'sfdisk', 'mkfs.ext4', 'extlinux', 'mount', 'du', 'zstd'],
    needsKernel: true,
    async write(ctx) {
      const format = ctx.manifest.outputs?.disk?.format ?? 'raw.zst';
      const work = path.join(ctx.outDir, '.disk-work');
      const sysroot = path.join(work, 'sysroot');
      const mnt = path.join(work, 'mnt');
      const raw = path.join(format === 'raw' ? ctx.outDir : work, DISK_FILE);
      ensureDir(sysroot);
      ensureDir(mnt);
      try {
        const uuid = fsUuidFor(ctx.commit);
        await deploySysroot(ctx, remote, sysroot, diskKernelArgs(ctx.manifest, uuid));
        const used = Number((await run('du', ['-s', '--block-size=1', sysroot], { signal: ctx.signal })).stdout.split(/\s/)[0]);
        const size = diskSize(ctx.manifest, used);
        await makeDisk(ctx, sysroot, raw, mnt, size, uuid);
        if (format === 'raw') return [await describeArtifact('disk', raw)];
        const zst = path.join(ctx.outDir, `${DISK_FILE}.zst`);
        // Mostly empty space: zstd stores the zeros in almost nothing, and `zstd -d --sparse` (or Digital Rebar's dd-zst) writes them back.
        await run('zstd', ['-q', '-T0', '-3', '-f', raw, '-o', zst], { signal: ctx.signal, progress: { label: `${ctx.name}: disk.raw.zst`, file: zst } });
        return [await describeArtifact('disk', zst)];
      } finally {
        // The mount is gone unless makeDisk was interrupted between mount and umount.
        await run('umount', [mnt]).catch(() => undefined);
        await run('rm', ['-rf', '--one-file-system', work]);
      }
    },
  };
}

/**
 * An OSTree sysroot in `sysroot` with the commit deployed as REMOTE:REF, the
 * way a host installed from the published tree has it (init-fs, os-init,
 * remote, deploy), its objects pulled from the local build repository.
 */
async function deploySysroot(ctx: OutputContext, remote: DiskRemote, sysroot: string, kargs: string[]): Promise<void> {
  const o = { signal: ctx.signal };
  const sysrepo = `--repo=${path.join(sysroot, 'ostree/repo')}`;
  await run('ostree', ['admin', 'init-fs', sysroot], o);
  await run('ostree', ['admin', `--sysroot=${sysroot}`, 'os-init', ctx.name], o);
  // The host's ostree writes syslinux.cfg on every deploy/upgrade, with /boot in its paths (no separate /boot partition).
  await run('ostree', ['config', sysrepo, 'set', 'sysroot.bootloader', 'syslinux'], o);
  await run('ostree', ['config', sysrepo, 'set', 'sysroot.bootprefix', 'true'], o);
  const url = `${remote.publicUrl.replace(/\/+$/, '')}/repo`;
  if (remote.signing) {
    await run('ostree', ['remote', 'add', sysrepo, '--set=gpg-verify=true', remote.remote, url, ctx.ref], o);
    const key = path.join(path.dirname(sysroot), 'signing.asc');
    writeHostFile(key, await exportPublicKey(remote.signing));
    await run('ostree', ['remote', 'gpg-import', sysrepo, `--keyring=${key}`, remote.remote], o);
    removeHostFile(key);
  } else {
    await run('ostree', ['remote', 'add', sysrepo, '--no-gpg-verify', remote.remote, url, ctx.ref], o);
  }
  await run('ostree', ['pull-local', sysrepo, '--untrusted', ctx.repo, ctx.commit], { ...o, progress: { label: `${ctx.name}: disk: objects` } });
  await run('ostree', ['refs', sysrepo, `--create=${remote.remote}:${ctx.ref}`, ctx.commit], o);
  // ostree's syslinux backend rewrites the existing config, so the first deploy needs one (empty) and the link to it.
  ensureDir(path.join(sysroot, 'boot/loader.0'));
  writeHostFile(path.join(sysroot, 'boot/loader.0/syslinux.cfg'), '');
  ensureDir(path.join(sysroot, 'boot/syslinux'));
  await run('ln', ['-sfn', 'loader.0', path.join(sysroot, 'boot/loader')], o);
  await run('ln', ['-sfn', '../loader/syslinux.cfg', path.join(sysroot, 'boot/syslinux/syslinux.cfg')], o);
  await run('ostree', ['admin', `--sysroot=${sysroot}`, 'deploy', `--os=${ctx.name}`, ...kargs.map((k) => `--karg=${k}`), `${remote.remote}:${ctx.ref}`], {
    ...o,
    // Deployments are made immutable (chattr +i) for a booted host's sake; here that would only stop
    // the scratch sysroot from being removed. The host's own deploys and upgrades set it as usual.
    env: { OSTREE_SYSROOT_DEBUG: 'mutable-deployments' },
  });
  if (!hostPathExists(path.join(sysroot, 'boot/loader/syslinux.cfg'))) throw new Error('ostree admin deploy wrote no syslinux.cfg: its syslinux bootloader backend was not used');
}

/** The raw disk: partition table, ext4 made from the sysroot at the partition's offset, extlinux in it, MBR code. */
async function makeDisk(ctx: OutputContext, sysroot: string, raw: string, mnt: string, size: number, uuid: string): Promise<void> {
  const o = { signal: ctx.signal };
  removeHostFile(raw);
  await run('truncate', ['-s', String(size), raw], o);
  await run('sfdisk', ['--quiet', raw], { ...o, input: partitionTable(ctx.commit) });
  await run(
    'mkfs.ext4',
    ['-q', '-F', '-L', 'treecast-root', '-U', uuid, '-E', `offset=${PART_OFFSET},hash_seed=${uuid}`, '-O', EXT4_FEATURES, '-d', sysroot, raw, `${(size - PART_OFFSET) / 1024}k`],
    { ...o, env: { E2FSPROGS_FAKE_TIME: String(ctx.epoch) }, progress: { label: `${ctx.name}: disk: ext4` } },
  );
  await run('mount', ['-o', `loop,offset=${PART_OFFSET}`, raw, mnt], o);
  try {
    await run('extlinux', ['--install', path.join(mnt, 'boot/syslinux')], o);
  } finally {
    await run('umount', [mnt]);
  }
  await run('dd', [`if=${MBR_BIN}`, `of=${raw}`, 'bs=440', 'count=1', 'conv=notrunc', 'status=none'], o);
}
