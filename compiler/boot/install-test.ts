/**
 * The host's side of the promise, proven: install a published ref the way a
 * host does (or as a kickstart's ostreesetup describes it), boot it under
 * QEMU, and read back which commit it booted. Each phase is timed; serial
 * logs are kept. Tests compose these phases into the full life cycle.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { UserError, withContext } from '../diagnostics.js';
import { requirePrograms } from '../exec.js';
import { parseOstreesetup } from '../publish/kickstart.js';
import { FAILED_UNIT, MARKER, withProbe } from './probe.js';
import { bootUntilMarker, type BootResult } from './qemu.js';
import { bootFile, deploy, initSysroot, loaderEntries, makeDisk, pull, removeSysroot, type Remote } from './sysroot.js';

export { MARKER } from './probe.js';

/** What the boot probe reported: the commit, how it was booted, systemd's state and its failed units. */
export interface Booted {
  commit: string;
  deployment: string;
  /** `systemctl is-system-running` once boot finished: running, degraded, ... */
  state: string;
  failedUnits: string[];
  seconds: number;
  /** The guest's hostname when it finished booting (a diskless node's comes from its overlay). */
  hostname?: string;
}

export function booted(r: BootResult): Booted {
  const failedUnits = r.lines.map((l) => FAILED_UNIT.exec(l)?.[1]).filter((u): u is string => Boolean(u));
  return { commit: r.match[1]!, deployment: r.match[2]!, state: r.match[3] ?? 'unknown', failedUnits: [...new Set(failedUnits)], seconds: r.seconds, ...(r.match[4] ? { hostname: r.match[4] } : {}) };
}

export interface PhaseTimings {
  [phase: string]: number;
}

export interface Host {
  osname: string;
  sysroot: string;
  disk: string;
  workDir: string;
  /** False for a sysroot someone made by hand (adoptHost): it is booted, never removed. */
  ownsSysroot: boolean;
  timings: PhaseTimings;
}

async function phase<T>(t: PhaseTimings, name: string, fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  try {
    return await fn();
  } catch (err) {
    throw withContext(`install-test phase "${name}"`, err);
  } finally {
    t[name] = Number(((performance.now() - t0) / 1000).toFixed(2));
  }
}

/** Remote settings from a published kickstart's ostreesetup line. */
export function remoteFromKickstart(ks: string, gpgKeyFile?: string): { osname: string; remote: Remote } {
  const f = parseOstreesetup(ks);
  for (const k of ['osname', 'remote', 'url', 'ref']) if (typeof f[k] !== 'string') throw new UserError(`kickstart ostreesetup has no --${k}`);
  if (!f.nogpg && !gpgKeyFile) throw new UserError('kickstart requires GPG verification (no --nogpg) but no public key was given');
  return { osname: f.osname as string, remote: { name: f.remote as string, url: f.url as string, ref: f.ref as string, gpgKeyFile: f.nogpg ? undefined : gpgKeyFile } };
}

/** The host's side: the ostree client, the disk image, immutable deployments, the machine. */
const HOST_PROGRAMS = ['ostree', 'mkfs.ext4', 'chattr', 'qemu-system-x86_64', 'cpio'];

/** init-fs, os-init, remote add, pull, deploy with the kernel args, then an ext4 disk image. */
export async function installHost(osname: string, remote: Remote, kargs: string[]): Promise<Host> {
  return prepareHost({ osname, prefix: `treecast-host-${osname}-` }, async (host) => {
    await phase(host.timings, 'init', () => initSysroot(host.sysroot, osname, remote));
    await phase(host.timings, 'pull', () => pull(host.sysroot, remote));
    await phase(host.timings, 'deploy', () => deploy(host.sysroot, osname, remote, kargs));
  });
}

/**
 * A sysroot deployed by hand (README: a host's life cycle): boot what it has
 * now. Only the disk image is made here, in a scratch dir of its own.
 */
export async function adoptHost(sysroot: string): Promise<Host> {
  // Checked before mkfs.ext4 -d copies a directory that may not be a sysroot at all.
  if (!loaderEntries(sysroot).length) throw new UserError(`${sysroot}: no boot loader entries (is it a sysroot with a deployment? see \`ostree admin status --sysroot=${sysroot}\`)`);
  // Two "unknown"s must never agree: a pass needs a real commit named by the entry and by the booted system.
  if (!loaderEntries(sysroot)[0]!.commit) throw new UserError(`${sysroot}: the default boot loader entry names no deployment commit (its ostree= argument does not lead to ostree/deploy/<os>/deploy/<checksum>.N), so the boot could not be checked`);
  return prepareHost({ osname: path.basename(sysroot), prefix: 'treecast-host-adopted-', sysroot }, async () => {});
}

/**
 * The scratch dir, `fill` (the install phases, for a sysroot of our own), then
 * the disk image; on any failure the scratch dir is removed before rethrowing.
 */
async function prepareHost(o: { osname: string; prefix: string; sysroot?: string }, fill: (host: Host) => Promise<void>): Promise<Host> {
  // Everything up to the boot, checked before a sysroot exists (no half-made host to clean up).
  await requirePrograms(HOST_PROGRAMS);
  const workDir = mkdtempSync(path.join(process.env.TREECAST_TEST_TMP ?? tmpdir(), o.prefix));
  const host: Host = { osname: o.osname, sysroot: o.sysroot ?? path.join(workDir, 'sysroot'), disk: path.join(workDir, 'disk.img'), workDir, ownsSysroot: !o.sysroot, timings: {} };
  try {
    await fill(host);
    await phase(host.timings, 'disk', () => makeDisk(host.sysroot, host.disk));
    return host;
  } catch (err) {
    await removeHostDir(host);
    throw err;
  }
}

/** Boot the default (newest) loader entry and return the commit the running system reports. */
export async function bootHost(host: Host, logFile: string, timeoutMs = 300_000): Promise<Booted & { entryCommit?: string }> {
  const entry = loaderEntries(host.sysroot)[0];
  if (!entry) throw new UserError('install-test: ostree wrote no boot loader entry (does the commit have a kernel?)');
  mkdirSync(path.dirname(logFile), { recursive: true });
  // The deployment's own initramfs plus the probe, outside the sysroot: the host is left as it is.
  const initrd = path.join(host.workDir, 'initrd-with-probe.img');
  await withProbe(bootFile(host.sysroot, entry.initrd), initrd);
  const r = await phase(host.timings, `boot ${path.basename(logFile, '.log')}`, () =>
    bootUntilMarker({
      kernel: { kernel: bootFile(host.sysroot, entry.linux), initrd, append: `${entry.options} root=LABEL=ostroot rw console=ttyS0 panic=10` },
      disk: host.disk,
      marker: MARKER,
      logFile,
      timeoutMs,
    }),
  );
  return { ...booted(r), entryCommit: entry.commit };
}

/** The disk is re-made from the sysroot after the host's ostree client changed it (no loop mounts here). */
export async function refreshDisk(host: Host): Promise<void> {
  await phase(host.timings, 'disk', () => makeDisk(host.sysroot, host.disk));
}

export async function destroyHost(host: Host): Promise<void> {
  await removeHostDir(host);
}

/** Our own sysroot first (its deployed roots are immutable), then the rest of the scratch dir. */
async function removeHostDir(host: Host): Promise<void> {
  if (host.ownsSysroot) await removeSysroot(host.sysroot);
  rmSync(host.workDir, { recursive: true, force: true });
}

/** Parse an iPXE script's kernel/initrd lines (URLs and kernel arguments). */
/** `${name}` replaced by the node's setting, as iPXE expands a script line; an unset setting is an error, not an empty string. */
export function expandIpxeSettings(text: string, settings: Record<string, string>): string {
  return text.replace(/\$\{([A-Za-z0-9_.:/-]+)\}/g, (_all, name: string) => {
    const v = settings[name];
    if (v === undefined) throw new UserError(`iPXE script uses the setting \${${name}}, which this node does not have`);
    return v;
  });
}

export function parseIpxe(text: string): { kernelUrl: string; initrdUrl: string; args: string[] } {
  const kernel = /^kernel\s+(\S+)\s*(.*)$/m.exec(text);
  const initrd = /^initrd\s+(\S+)/m.exec(text);
  if (!kernel || !initrd) throw new UserError('iPXE script has no kernel or initrd line');
  return { kernelUrl: kernel[1]!, initrdUrl: initrd[1]!, args: kernel[2]!.split(/\s+/).filter((a) => a && !a.startsWith('initrd=')) };
}

/**
 * Boot a diskless node from a published iPXE script: kernel and initrd are
 * fetched over HTTP (as iPXE would), the initrd fetches the squashfs itself.
 * `guestUrl` is the publish URL as the guest sees it (10.0.2.2 under QEMU user networking).
 */
/**
 * `settings`: iPXE settings the node holds (its embedded script's `set`), expanded
 * in the script as iPXE does (`${name}`), e.g. treecast-token; `mac`: the node's NIC.
 */
export async function bootDiskless(ipxe: string, fetchFile: (url: string) => Promise<Buffer>, logFile: string, timeoutMs = 300_000, node: { settings?: Record<string, string>; mac?: string } = {}): Promise<Booted> {
  const p = parseIpxe(expandIpxeSettings(ipxe, node.settings ?? {}));
  const dir = mkdtempSync(path.join(process.env.TREECAST_TEST_TMP ?? tmpdir(), 'treecast-diskless-'));
  const kernel = path.join(dir, 'vmlinuz');
  const initrd = path.join(dir, 'initrd.img');
  writeFileSync(kernel, await fetchFile(p.kernelUrl));
  writeFileSync(initrd, await fetchFile(p.initrdUrl));
  try {
    const probed = path.join(dir, 'initrd-with-probe.img');
    await withProbe(initrd, probed);
    const r = await bootUntilMarker({ kernel: { kernel, initrd: probed, append: [...p.args, 'console=ttyS0'].join(' ') }, marker: MARKER, logFile, timeoutMs, mac: node.mac });
    return booted(r);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function readText(p: string): string {
  return readFileSync(p, 'utf8');
}
