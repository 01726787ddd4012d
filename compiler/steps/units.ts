import { existsSync, lstatSync, mkdirSync, rmSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { UserError } from '../diagnostics.js';
import { run } from '../exec.js';
import { resolveInRoot } from '../build/rootfs.js';
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
    const sc = (verb: string, names: string[]) => run('systemctl', [`--root=${ctx.root}`, '--no-reload', verb, ...names], { signal: ctx.signal });
    if (u.enable?.length) await sc('enable', u.enable);
    if (u.disable?.length) await sc('disable', u.disable);
    if (u.mask?.length) {
      // systemctl refuses to mask units that do not exist in the tree; a mask
      // is only a /dev/null link, so write it ourselves.
      const dir = resolveInRoot(ctx.root, '/etc/systemd/system', true);
      mkdirSync(dir, { recursive: true });
      for (const name of u.mask) {
        const link = path.join(dir, name);
        if (lstatSync(link, { throwIfNoEntry: false })) rmSync(link, { force: true });
        symlinkSync('/dev/null', link);
      }
    }
    if (ctx.manifest['default-target']) {
      const target = ctx.manifest['default-target'];
      const unitDirs = ['/etc/systemd/system', '/usr/lib/systemd/system', '/lib/systemd/system'];
      if (!unitDirs.some((d) => existsSync(resolveInRoot(ctx.root, `${d}/${target}`, true)))) {
        throw new UserError(`default-target ${target} does not exist in the image`);
      }
      const link = path.join(resolveInRoot(ctx.root, '/etc/systemd/system', true), 'default.target');
      mkdirSync(path.dirname(link), { recursive: true });
      if (lstatSync(link, { throwIfNoEntry: false })) rmSync(link);
      symlinkSync(`/usr/lib/systemd/system/${target}`, link);
    }
    return `${u.enable?.length ?? 0} enabled, ${u.disable?.length ?? 0} disabled, ${u.mask?.length ?? 0} masked`;
  },
};
