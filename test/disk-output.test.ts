/**
 * outputs.disk on a fixture image (no Debian, no boot: test/boot.test.ts boots
 * the example's disk from the firmware): what a host finds on the disk. A
 * partition table and extlinux's MBR code, an ext4 partition whose UUID the
 * kernel command line names, an OSTree sysroot with the commit deployed and
 * its origin on the published remote, ostree's syslinux menu, and with
 * signing configured a remote that verifies commits with the signing key.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fsUuidFor } from '../compiler/outputs/disk.js';
import { makeRepo, requireTool, sh, shellTree, type BuiltImage, type Fixture } from './helpers/build-fixture.js';

const IMAGE = `name: host
base: { source: tree, path: trees/base }
automatic-version-prefix: "1"
kernel-args: [console=ttyS0]
outputs:
  disk: { size: 160M, kernel-args: [quiet] }
`;

describe('outputs.disk: a deployed, bootable, self-upgrading sysroot on a disk image', () => {
  let fx: Fixture;
  let img: BuiltImage;
  let work: string;
  let raw: string;
  let mnt: string;
  let mounted = false;
  let fpr: string;

  beforeAll(() => {
    for (const tool of ['ostree', 'sfdisk', 'mkfs.ext4', 'extlinux', 'zstd', 'blkid', 'gpg']) requireTool(tool);
    fx = makeRepo({ prefix: 'disk', files: { ...shellTree('trees/base'), 'images/host.yaml': IMAGE } });
    work = path.dirname(fx.dir);
    const homedir = path.join(work, 'gnupg');
    const k = fx.cli(['keygen', '--homedir', homedir, '--json']);
    expect(k.code, k.stderr).toBe(0);
    fpr = (JSON.parse(k.stdout) as { fingerprint: string }).fingerprint;
    fx.write('treecast.yaml', `publish: { url: "http://images.example.org:8080", remote: fleet }\nsigning: { gpg-key: "${fpr}", gpg-homedir: ${homedir} }\n`);
    fx.commit('signed, disk output');
    const r = fx.cli(['build', '--json', '--no-remote-history']);
    expect(r.code, r.stderr).toBe(0);
    img = (JSON.parse(r.stdout) as { images: BuiltImage[] }).images[0]!;
    raw = path.join(work, 'disk.raw');
    sh('zstd', ['-d', '-q', '--sparse', img.artifacts.find((a) => a.type === 'disk')!.path, '-o', raw]);
    mnt = path.join(work, 'mnt');
    fs.mkdirSync(mnt);
    sh('mount', ['-o', 'ro,loop,offset=1048576', raw, mnt]);
    mounted = true;
  }, 120_000);

  afterAll(() => {
    if (mounted) spawnSync('umount', [mnt]);
    spawnSync('gpgconf', ['--homedir', path.join(work, 'gnupg'), '--kill', 'all']);
    fx?.cleanup();
  });

  it('is disk.raw.zst (the default format), listed in MANIFEST.json and SHA256SUMS, the size the manifest asks for', () => {
    const disk = img.artifacts.find((a) => a.type === 'disk')!;
    expect(path.basename(disk.path)).toBe('disk.raw.zst');
    expect(fs.readFileSync(path.join(img.outDir, 'SHA256SUMS'), 'utf8')).toContain(`${disk.sha256}  disk.raw.zst`);
    expect(fs.statSync(raw).size).toBe(160 * 1024 * 1024);
    // Sparse: the empty part of the disk takes no blocks.
    expect(fs.statSync(raw).blocks * 512).toBeLessThan(fs.statSync(raw).size / 2);
  });

  it('has an MBR with extlinux\'s code and one bootable Linux partition at 1 MiB, label id from the commit', () => {
    const table = JSON.parse(sh('sfdisk', ['--json', raw])).partitiontable;
    expect(table).toMatchObject({ label: 'dos', id: `0x${img.commit.slice(0, 8)}` });
    expect(table.partitions).toHaveLength(1);
    expect(table.partitions[0]).toMatchObject({ start: 2048, type: '83', bootable: true });
    const mbr = fs.readFileSync('/usr/lib/EXTLINUX/mbr.bin');
    expect(fs.readFileSync(raw).subarray(0, 440).equals(mbr.subarray(0, 440))).toBe(true);
    expect(sh('blkid', ['--probe', '--offset', '1048576', '-s', 'UUID', '-o', 'value', raw]).trim()).toBe(fsUuidFor(img.commit));
  });

  it('holds the commit deployed, its origin the published remote, verified with the signing key', () => {
    const deployDir = path.join(mnt, 'ostree/deploy/host/deploy');
    expect(fs.readdirSync(deployDir).filter((d) => !d.endsWith('.origin'))).toEqual([`${img.commit}.0`]);
    expect(fs.readFileSync(path.join(deployDir, `${img.commit}.0.origin`), 'utf8')).toContain(`refspec=fleet:${img.ref}`);
    const config = fs.readFileSync(path.join(mnt, 'ostree/repo/config'), 'utf8');
    expect(config).toMatch(/\[remote "fleet"\]\nurl=http:\/\/images\.example\.org:8080\/repo\n/);
    expect(config).toMatch(/gpg-verify=true/);
    expect(config).toMatch(/\[sysroot\]\nbootloader=syslinux\nbootprefix=true/);
    // The imported key is the signing key.
    const keyring = path.join(mnt, 'ostree/repo/fleet.trustedkeys.gpg');
    expect(sh('gpg', ['--no-default-keyring', '--keyring', keyring, '--with-colons', '--list-keys'])).toContain(fpr);
    // /etc of the deployment is the image's /usr/etc, merged by ostree.
    expect(fs.existsSync(path.join(deployDir, `${img.commit}.0`, 'etc/passwd'))).toBe(true);
    expect(sh('ostree', ['rev-parse', `--repo=${path.join(mnt, 'ostree/repo')}`, `fleet:${img.ref}`]).trim()).toBe(img.commit);
  });

  it('boots with extlinux reading the syslinux menu ostree writes: kernel and initramfs in /boot, root by UUID, the image\'s kernel args', () => {
    expect(fs.readlinkSync(path.join(mnt, 'boot/syslinux/syslinux.cfg'))).toBe('../loader/syslinux.cfg');
    expect(fs.existsSync(path.join(mnt, 'boot/syslinux/ldlinux.sys'))).toBe(true);
    const menu = fs.readFileSync(path.join(mnt, 'boot/loader/syslinux.cfg'), 'utf8');
    const kernel = /KERNEL (\S+)/.exec(menu)![1]!;
    const initrd = /INITRD (\S+)/.exec(menu)![1]!;
    expect(kernel).toMatch(/^\/boot\/ostree\/host-[0-9a-f]{64}\/vmlinuz-6\.1\.0-test$/);
    expect(fs.existsSync(path.join(mnt, kernel))).toBe(true);
    expect(fs.existsSync(path.join(mnt, initrd))).toBe(true);
    expect(menu).toMatch(new RegExp(`APPEND root=UUID=${fsUuidFor(img.commit)} rw console=ttyS0 quiet ostree=/ostree/boot\\.\\d/host/[0-9a-f]{64}/0`));
  });

  it('refuses a size that cannot hold the sysroot, naming it', () => {
    fx.write('images/host.yaml', IMAGE.replace('size: 160M', 'size: 1M'));
    fx.commit('too small');
    const r = fx.cli(['build', '--no-remote-history']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/outputs\.disk\.size 1M is too small for image host: its sysroot alone takes \d+ MiB/);
  }, 60_000);
});
