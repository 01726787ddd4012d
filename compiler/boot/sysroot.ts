/**
 * Playing the host: a scratch OSTree sysroot directory driven by the real
 * `ostree admin` client (BOOTING.md's measured flow), turned into an ext4
 * disk image without loop devices (`mkfs.ext4 -d`).
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import path from 'node:path';
import { run } from '../exec.js';

export interface LoaderEntry {
  file: string;
  version: number;
  options: string;
  linux: string;
  initrd: string;
  /** Commit checksum of the deployment the entry boots. */
  commit?: string;
}

export interface Remote {
  name: string;
  url: string;
  ref: string;
  /** Armoured public key file to trust; absent = --no-gpg-verify. */
  gpgKeyFile?: string;
}

export async function initSysroot(s: string, osname: string, remote: Remote): Promise<void> {
  mkdirSync(s, { recursive: true }); // init-fs wants the directory to exist
  await run('ostree', ['admin', 'init-fs', s]);
  await run('ostree', ['admin', `--sysroot=${s}`, 'os-init', osname]);
  const add = ['remote', 'add', `--repo=${s}/ostree/repo`];
  add.push(remote.gpgKeyFile ? `--gpg-import=${remote.gpgKeyFile}` : '--no-gpg-verify');
  await run('ostree', [...add, remote.name, remote.url, remote.ref]);
}

export async function pull(s: string, remote: Remote): Promise<void> {
  await run('ostree', [`--repo=${s}/ostree/repo`, 'pull', remote.name, remote.ref]);
}

export async function deploy(s: string, osname: string, remote: Remote, kargs: string[]): Promise<void> {
  await run('ostree', ['admin', `--sysroot=${s}`, 'deploy', `--os=${osname}`, ...kargs.map((k) => `--karg=${k}`), `${remote.name}:${remote.ref}`]);
}

export async function upgrade(s: string, osname: string): Promise<string> {
  return (await run('ostree', ['admin', `--sysroot=${s}`, 'upgrade', `--os=${osname}`])).stdout;
}

export async function undeploy(s: string, index: number): Promise<void> {
  await run('ostree', ['admin', `--sysroot=${s}`, 'undeploy', String(index)]);
}

export async function status(s: string): Promise<string> {
  return (await run('ostree', ['admin', `--sysroot=${s}`, 'status'])).stdout;
}

/** Boot loader entries ostree wrote, newest (highest version: the default) first. */
export function loaderEntries(s: string): LoaderEntry[] {
  const dir = path.join(s, 'boot/loader/entries');
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith('.conf'))
    .map((f) => {
      const text = readFileSync(path.join(dir, f), 'utf8');
      const get = (k: string) => new RegExp(`^${k}\\s+(.*)$`, 'm').exec(text)?.[1]?.trim() ?? '';
      const options = get('options');
      const ostreeArg = /(?:^|\s)ostree=(\S+)/.exec(options)?.[1];
      let commit: string | undefined;
      if (ostreeArg) {
        // ostree=/ostree/boot.N/OS/BOOTCSUM/I -> ../../../deploy/OS/deploy/<commit>.<serial>
        try {
          const target = realpathSync(path.join(s, ostreeArg));
          commit = /\/deploy\/([0-9a-f]{64})\.\d+$/.exec(target)?.[1];
        } catch {
          commit = undefined;
        }
      }
      return { file: f, version: Number(get('version')), options, linux: get('linux'), initrd: get('initrd'), commit };
    })
    .sort((a, b) => b.version - a.version);
}


/** Host path of a loader entry's kernel or initrd (paths are relative to /boot when /boot is not separate). */
export function bootFile(s: string, p: string): string {
  return p.startsWith('/boot/') ? path.join(s, p) : path.join(s, 'boot', p);
}

/** ext4 image of the sysroot, hardlinks kept, no loop device needed. */
export async function makeDisk(s: string, disk: string, size = '4G'): Promise<void> {
  rmSync(disk, { force: true });
  await run('mkfs.ext4', ['-q', '-F', '-L', 'ostroot', '-d', s, disk, size]);
}

/** Deployed roots are immutable (chattr +i): clear that before removing a scratch sysroot. */
export async function removeSysroot(s: string): Promise<void> {
  const deployRoot = path.join(s, 'ostree/deploy');
  if (existsSync(deployRoot)) {
    for (const os of readdirSync(deployRoot)) {
      const d = path.join(deployRoot, os, 'deploy');
      if (!existsSync(d)) continue;
      for (const dep of readdirSync(d)) {
        if (!dep.endsWith('.origin')) await run('chattr', ['-i', path.join(d, dep)], { allowFailure: true });
      }
    }
  }
  rmSync(s, { recursive: true, force: true });
}
