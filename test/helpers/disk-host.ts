/**
 * A host made from the published disk image (outputs.disk), booted by its
 * firmware under QEMU (SeaBIOS, extlinux, no -kernel), that runs its own
 * life cycle from inside: a test driver placed in the deployment's /etc (as
 * an operator's local config would be: ostree carries /etc across upgrades)
 * does one phase per boot, then runs the boot probe's marker script, which
 * reports the booted commit and systemd's state and powers off.
 *   phase 1: diverge /etc/passwd (useradd), write /var and /etc, `ostree admin upgrade`
 *   phase 2: report the accounts and files, roll back to the previous deployment
 *   phase 3: marker only
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { run } from '../../compiler/exec.js';
import { booted, type Booted } from '../../compiler/boot/install-test.js';
import { MARKER } from '../../compiler/boot/probe.js';
import { bootUntilMarker } from '../../compiler/boot/qemu.js';
import { PROJECT_ROOT } from './cli.js';

const PART_OFFSET = 1024 * 1024;

/** The raw disk from the published disk.raw.zst, sparse, as `dd-zst` would write it. */
export async function unpackDisk(zst: string, raw: string): Promise<void> {
  await run('zstd', ['-d', '-q', '-f', '--sparse', zst, '-o', raw]);
}

function driverScript(newUser: string): string {
  return `#!/bin/sh
# treecast disk life-cycle test driver (test harness, not part of the image)
set -u
state=/var/lib/treecast-test
mkdir -p "$state"
phase=$(cat "$state/phase" 2>/dev/null || echo 1)
say() { printf '\\n%s\\n' "$1" > /dev/ttyS0; }
waitnet() { i=0; while [ $i -lt 120 ] && ! ip route | grep -q '^default'; do sleep 1; i=$((i+1)); done; }
case "$phase" in
1)
  useradd -M -u 1900 -s /bin/sh localuser
  echo kept > "$state/var-file"
  echo "local edit" > /etc/treecast-local-edit
  waitnet
  if ostree admin upgrade > "$state/upgrade.log" 2>&1; then say "TREECAST-UPGRADE ok"; else say "TREECAST-UPGRADE failed: $(tail -n 5 "$state/upgrade.log" | tr '\\n' ' ')"; fi
  echo 2 > "$state/phase" ;;
2)
  say "TREECAST-CHECK newuser=$(getent passwd ${newUser} | cut -d: -f3) localuser=$(getent passwd localuser | cut -d: -f3) var=$(cat "$state/var-file") etc=$(cat /etc/treecast-local-edit | tr ' ' _)"
  rollback=$(ostree admin status | awk '$1 != "*" && $2 ~ /^[0-9a-f]+\\.[0-9]+$/ { sub(/\\.[0-9]+$/, "", $2); print $2; exit }')
  if ostree admin deploy --retain "$rollback" > "$state/rollback.log" 2>&1; then say "TREECAST-ROLLBACK ok $rollback"; else say "TREECAST-ROLLBACK failed: $(tail -n 5 "$state/rollback.log" | tr '\\n' ' ')"; fi
  echo 3 > "$state/phase" ;;
esac
exec /bin/sh /etc/treecast-test/boot-marker.sh
`;
}

const UNIT = `[Unit]
Description=treecast disk life-cycle test driver (test harness)
After=multi-user.target

[Service]
Type=simple
ExecStart=/bin/sh /etc/treecast-test/driver.sh
`;

/** Loop-mount the disk's partition and put the driver into the (only) deployment's /etc. */
export async function installDriver(raw: string, osname: string, newUser: string, scratch: string): Promise<void> {
  const mnt = mkdtempSync(path.join(scratch, 'mnt-'));
  await run('mount', ['-o', `loop,offset=${PART_OFFSET}`, raw, mnt]);
  try {
    const deployDir = path.join(mnt, 'ostree/deploy', osname, 'deploy');
    const deployments = readdirSync(deployDir).filter((d) => /^[0-9a-f]{64}\.\d+$/.test(d));
    if (deployments.length !== 1) throw new Error(`the disk holds ${deployments.length} deployments of ${osname}, expected 1`);
    const etc = path.join(deployDir, deployments[0]!, 'etc');
    mkdirSync(path.join(etc, 'treecast-test'), { recursive: true });
    writeFileSync(path.join(etc, 'treecast-test/driver.sh'), driverScript(newUser), { mode: 0o755 });
    writeFileSync(path.join(etc, 'treecast-test/boot-marker.sh'), readFileSync(path.join(PROJECT_ROOT, 'compiler/boot/probe/boot-marker.sh')), { mode: 0o755 });
    writeFileSync(path.join(etc, 'systemd/system/treecast-test-driver.service'), UNIT);
    mkdirSync(path.join(etc, 'systemd/system/multi-user.target.wants'), { recursive: true });
    symlinkSync('/etc/systemd/system/treecast-test-driver.service', path.join(etc, 'systemd/system/multi-user.target.wants/treecast-test-driver.service'));
  } finally {
    await run('umount', [mnt]);
    rmSync(mnt, { recursive: true, force: true });
  }
}

/** Boot the disk from its firmware until the marker; the console lines before it carry the driver's reports. */
export async function bootDisk(raw: string, logFile: string, timeoutMs = 600_000): Promise<Booted & { lines: string[] }> {
  const r = await bootUntilMarker({ disk: raw, marker: MARKER, logFile, timeoutMs, shutdownMs: 90_000 });
  return { ...booted(r), lines: r.lines };
}

/**
 * Install the installer-layout tarball the way Digital Rebar image-deploy does
 * (seed 002): a blank disk, one partition, the tarball extracted onto it, a
 * bootloader for the kernel in /boot. The file system is made from the
 * extracted tree (mkfs.ext4 -d) and extlinux comes from the build host: the
 * example image carries no bootloader package of its own (image-deploy would
 * run the image's grub-install through curtin). The boot probe's marker unit
 * goes into /etc, and treecast.commit= on the command line names the commit
 * the marker reports (a plain root has no ostree deployment to read it from).
 */
export async function installerDisk(tarball: string, commit: string, raw: string, scratch: string): Promise<void> {
  const root = mkdtempSync(path.join(scratch, 'installer-root-'));
  try {
    await run('tar', ['-x', '--zstd', '-p', '--numeric-owner', '-f', tarball, '-C', root]);
    const kernels = readdirSync(path.join(root, 'boot')).filter((f) => f.startsWith('vmlinuz-'));
    if (kernels.length !== 1) throw new Error(`the installer tarball has ${kernels.length} kernels in /boot: ${kernels.join(', ')}`);
    const kver = kernels[0]!.slice('vmlinuz-'.length);
    const uuid = '7265e4c1-0000-4000-8000-000000000001';
    const etc = path.join(root, 'etc');
    mkdirSync(path.join(etc, 'treecast-test'), { recursive: true });
    writeFileSync(path.join(etc, 'treecast-test/boot-marker.sh'), readFileSync(path.join(PROJECT_ROOT, 'compiler/boot/probe/boot-marker.sh')), { mode: 0o755 });
    writeFileSync(path.join(etc, 'systemd/system/treecast-test-marker.service'), UNIT.replace('test driver', 'boot marker').replace('/etc/treecast-test/driver.sh', '/etc/treecast-test/boot-marker.sh'));
    mkdirSync(path.join(etc, 'systemd/system/multi-user.target.wants'), { recursive: true });
    symlinkSync('/etc/systemd/system/treecast-test-marker.service', path.join(etc, 'systemd/system/multi-user.target.wants/treecast-test-marker.service'));
    mkdirSync(path.join(root, 'boot/extlinux'), { recursive: true });
    writeFileSync(
      path.join(root, 'boot/extlinux/extlinux.conf'),
      `DEFAULT image\nTIMEOUT 1\nLABEL image\n  KERNEL /boot/vmlinuz-${kver}\n  INITRD /boot/initrd.img-${kver}\n  APPEND root=UUID=${uuid} rw console=ttyS0 treecast.commit=${commit}\n`,
    );
    await run('truncate', ['-s', '3G', raw]);
    await run('sfdisk', ['--quiet', raw], { input: 'label: dos\nstart=2048, type=83, bootable\n' });
    await run('mkfs.ext4', ['-q', '-F', '-U', uuid, '-O', '^64bit,^orphan_file,^metadata_csum_seed', '-d', root, '-E', `offset=${PART_OFFSET}`, raw, `${3 * 1024 * 1024 - 1024}k`]);
    const mnt = mkdtempSync(path.join(scratch, 'mnt-'));
    await run('mount', ['-o', `loop,offset=${PART_OFFSET}`, raw, mnt]);
    try {
      await run('extlinux', ['--install', path.join(mnt, 'boot/extlinux')]);
    } finally {
      await run('umount', [mnt]);
      rmSync(mnt, { recursive: true, force: true });
    }
    await run('dd', ['if=/usr/lib/EXTLINUX/mbr.bin', `of=${raw}`, 'bs=440', 'count=1', 'conv=notrunc', 'status=none']);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}
