import { UserError } from '../diagnostics.js';
import { run } from '../exec.js';
import { existsIn, lstatIn, mkdirInRoot, symlinkIn, walkIn } from '../compile/rootfs.js';
import type { Step } from './step.js';

/**
 * units: enable/disable/mask with `systemctl --root`, which applies the
 * units' [Install] sections to the image offline, exactly as on a running
 * host, without booting anything.
 */
export const units: Step = {
  name: 'units',
  tools: ['systemctl'],
  applies: (m) => Boolean(m.units?.enable?.length || m.units?.disable?.length || m.units?.mask?.length || m['default-target']),
  async run(ctx) {
    const u = ctx.manifest.units ?? {};
    if (u.enable?.length || u.disable?.length) assertSystemctlConfined(ctx.root);
    const sc = (verb: string, names: string[]) => run('systemctl', [`--root=${ctx.root}`, '--no-reload', verb, ...names], { signal: ctx.signal });
    if (u.enable?.length) await sc('enable', u.enable);
    if (u.disable?.length) await sc('disable', u.disable);
    if (u.mask?.length) {
      // systemctl refuses to mask units that do not exist in the tree; a mask
      // is only a /dev/null link, so write it ourselves.
      for (const name of u.mask) symlinkIn(ctx.root, `/etc/systemd/system/${name}`, '/dev/null');
    }
    if (ctx.manifest['default-target']) {
      const target = ctx.manifest['default-target'];
      const unitDirs = ['/etc/systemd/system', '/usr/lib/systemd/system', '/lib/systemd/system'];
      if (!unitDirs.some((d) => existsIn(ctx.root, `${d}/${target}`))) {
        throw new UserError(`default-target ${target} does not exist in the image`);
      }
      symlinkIn(ctx.root, '/etc/systemd/system/default.target', `/usr/lib/systemd/system/${target}`);
    }
    return `${u.enable?.length ?? 0} enabled, ${u.disable?.length ?? 0} disabled, ${u.mask?.length ?? 0} masked`;
  },
};

/** Names systemd gives unit files: a link with another name in the unit dir is not one of systemd's. */
const UNIT_FILE = /^[^/]+\.(service|socket|target|timer|path|mount|automount|swap|slice|scope|device)$/;

/**
 * `systemctl --root` creates and removes links under /etc/systemd/system with
 * plain host paths: a directory on the way that is a symlink (planted by an
 * overlay or files[]) would lead its writes out of the image, absolute or
 * `../..` alike. So the directories it writes into must be real directories
 * of the image, and every link inside them must be a unit link (which
 * systemctl replaces or removes, never writes through).
 */
export function assertSystemctlConfined(root: string): void {
  const dir = '/etc/systemd/system';
  for (const p of ['/etc', '/etc/systemd', dir]) {
    const st = lstatIn(root, p);
    if (st && !st.isDirectory()) {
      throw new UserError(`${p} in the image is ${st.isSymbolicLink() ? 'a symlink' : 'not a directory'}: systemctl enables units by writing below it, so it must be a real directory`);
    }
  }
  mkdirInRoot(root, dir);
  for (const [p, st] of walkIn(root, dir)) {
    if (st.isSymbolicLink() && !UNIT_FILE.test(p.slice(p.lastIndexOf('/') + 1))) {
      throw new UserError(`${p} in the image is a symlink where systemctl keeps directories of unit links (.wants, .requires, drop-ins): it would follow it when enabling units; make it a real directory`);
    }
  }
}
