/**
 * initramfs: dracut, run by treecast once per kernel and dracut inputs.
 *
 * Debian's kernel postinst (and dracut's own trigger) would build an
 * initramfs while mmdebstrap installs the base, before the image's dracut
 * configuration (overlays, files, postprocess) is in place, so it was thrown
 * away and built again by hand in postprocess. Now the base is installed with
 * INITRD=No (base-debian.ts, packages.ts) and this step, after postprocess,
 * builds the one initramfs the image ships. Its result is cached in
 * <cache>/initramfs/<key>.img, the key being everything dracut reads that a
 * manifest can change (initramfsKey); an image whose key is unchanged (a
 * rebuild after an unrelated edit, an image derived from one that already
 * has it) does not run dracut at all.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import { UserError } from '../diagnostics.js';
import { run } from '../exec.js';
import { canonicalJson, sha256 } from '../compile/input-hash.js';
import { ensureDir, hostPathExists, renameHostFile } from '../compile/host-files.js';
import { copyFileIn, copyFileOut, isDirIn, isFileIn, lstatIn, readdirIn, readFileIn, readlinkIn, readTextIn, removeInRoot, walkIn, writeFileIn } from '../compile/rootfs.js';
import type { ImageManifest } from '../manifest/types.js';
import { hostProcEntries, sandboxArgs } from './sandbox.js';
import { withLayer } from './layer.js';
import { withoutImageStamp } from './finalize.js';
import type { Step } from './step.js';

/** Bump when the argv or the way the result is installed changes. */
const INITRAMFS_VERSION = 1;

/**
 * What dracut reads that an image can change, besides the packages (whose
 * versions the dpkg status file names): its configuration and modules, and
 * the configuration its modules copy into the initramfs. A file outside
 * these that a custom dracut module reads is not seen: such a module should
 * read it from /etc/dracut.conf.d or /usr/lib/dracut (docs/layers.md).
 */
export const DRACUT_INPUTS = [
  '/etc/dracut.conf',
  '/etc/dracut.conf.d',
  '/usr/lib/dracut',
  '/etc/modprobe.d',
  '/usr/lib/modprobe.d',
  '/etc/modules-load.d',
  '/etc/cmdline.d',
  '/etc/udev',
  '/etc/ostree',
  '/usr/lib/ostree',
  '/etc/fstab',
  '/etc/crypttab',
  '/etc/vconsole.conf',
  '/etc/locale.conf',
  '/etc/os-release',
  '/usr/lib/os-release',
  '/etc/systemd/system.conf',
  '/etc/systemd/journald.conf',
  '/var/lib/dpkg/status',
];

export interface Kernel {
  version: string;
  /** Where the initramfs goes: next to the kernel, where finalize looks for it. */
  initramfs: string;
}

/** Kernels of the image: /boot/vmlinuz-V (a Debian base) and /usr/lib/modules/V/vmlinuz (an image-derived base), with their modules. */
export function kernelsIn(root: string): Kernel[] {
  const out: Kernel[] = [];
  for (const f of readdirIn(root, '/boot')) {
    const v = /^vmlinuz-(.+)$/.exec(f)?.[1];
    if (v && !v.includes('/') && isDirIn(root, `/usr/lib/modules/${v}`)) out.push({ version: v, initramfs: `/boot/initrd.img-${v}` });
  }
  for (const v of readdirIn(root, '/usr/lib/modules')) {
    if (!out.some((k) => k.version === v) && isFileIn(root, `/usr/lib/modules/${v}/vmlinuz`)) out.push({ version: v, initramfs: `/usr/lib/modules/${v}/initramfs.img` });
  }
  return out;
}

/** dracut's argv for one kernel: pure. `--no-hostonly`: an image boots many hosts, never the build host. */
export function dracutArgs(m: ImageManifest, kver: string, out: string): string[] {
  const extra = typeof m.initramfs === 'object' ? (m.initramfs.args ?? []) : [];
  return ['dracut', '--force', '--no-hostonly', '--reproducible', ...extra, '--kver', kver, out];
}

const OS_RELEASE = new Set(['/etc/os-release', '/usr/lib/os-release']);
/**
 * finalize stamps IMAGE_ID and IMAGE_VERSION into os-release: a derived
 * image's base carries its base's name and version, which would make every
 * new base version (and every derived image) rebuild an initramfs that dracut
 * would make the same but for those two lines of initrd-release.
 */

/** The cache key of an initramfs: kernel, dracut argv and the content of DRACUT_INPUTS (names, types, modes, owners, targets, bytes). */
export function initramfsKey(root: string, kver: string, argv: string[]): string {
  const h = createHash('sha256');
  h.update(canonicalJson({ v: INITRAMFS_VERSION, kver, argv }) + '\n');
  const entry = (p: string) => {
    const st = lstatIn(root, p);
    if (!st) return;
    const meta = `${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}`;
    if (st.isSymbolicLink()) h.update(`l ${p} ${meta} ${readlinkIn(root, p)}\n`);
    else if (st.isFile()) h.update(`f ${p} ${meta} ${sha256(OS_RELEASE.has(p) ? withoutImageStamp(readFileIn(root, p).toString('utf8')) : readFileIn(root, p))}\n`);
    else if (st.isDirectory()) h.update(`d ${p} ${meta}\n`);
  };
  for (const input of DRACUT_INPUTS) {
    entry(input);
    if (lstatIn(root, input)?.isDirectory()) for (const [p] of walkIn(root, input)) entry(p);
  }
  // dracut copies root's account lines into the initramfs; other accounts do not matter to it.
  for (const f of ['/etc/passwd', '/etc/group']) h.update(`${f} ${(readTextIn(root, f) ?? '').split('\n').find((l) => l.startsWith('root:')) ?? ''}\n`);
  return h.digest('hex');
}

const keyFile = (kver: string) => `/usr/lib/modules/${kver}/treecast-initramfs.key`;
/** Where dracut writes inside the image: /tmp is the sandbox's own tmpfs. */
const STAGING = '/var/tmp/treecast-initramfs.img';

export const initramfs: Step = {
  name: 'initramfs',
  tools: ['bwrap'],
  applies: (m) => m.initramfs !== false,
  async run(ctx) {
    const kernels = kernelsIn(ctx.root);
    const dracut = isFileIn(ctx.root, '/usr/bin/dracut');
    if (!kernels.length || !dracut) {
      const missing = !kernels.length ? 'no kernel (/boot/vmlinuz-* with /usr/lib/modules/<version>)' : 'no dracut (/usr/bin/dracut)';
      if (ctx.manifest.initramfs) throw new UserError(`initramfs is set, but the image has ${missing}: add ${!kernels.length ? 'linux-image-amd64' : 'dracut'} to packages`);
      return `${missing}: nothing to build`;
    }
    const cacheDir = path.join(ctx.repo.cacheDir, 'initramfs');
    ensureDir(cacheDir);
    const done: string[] = [];
    for (const k of kernels) {
      const argv = dracutArgs(ctx.manifest, k.version, STAGING);
      const key = initramfsKey(ctx.root, k.version, argv);
      if (readTextIn(ctx.root, keyFile(k.version))?.trim() === key && isFileIn(ctx.root, k.initramfs)) {
        done.push(`${k.version} unchanged (${key.slice(0, 12)})`);
        continue;
      }
      const cached = path.join(cacheDir, `${key}.img`);
      let how = 'cached';
      if (!hostPathExists(cached)) {
        const t0 = performance.now();
        await withLayer(ctx, 'initramfs', async (root) => {
          const args = sandboxArgs(root, { network: false, epoch: ctx.epoch, image: ctx.manifest.name, procPresent: hostProcEntries() }, argv);
          await run('bwrap', args, { signal: ctx.signal, env: { PATH: process.env.PATH }, cleanEnv: true });
        });
        // Into the cache by rename: a build killed half way leaves no truncated entry.
        copyFileOut(ctx.root, STAGING, `${cached}.tmp`);
        renameHostFile(`${cached}.tmp`, cached);
        removeInRoot(ctx.root, STAGING);
        how = `dracut ${((performance.now() - t0) / 1000).toFixed(1)}s`;
      }
      // One way in for both cases, so a cached initramfs is byte- and mode-identical to a fresh one.
      copyFileIn(ctx.root, cached, k.initramfs, { mode: 0o600 });
      writeFileIn(ctx.root, keyFile(k.version), key + '\n');
      done.push(`${k.version} ${how} (${key.slice(0, 12)})`);
    }
    return done.join(', ');
  },
};

