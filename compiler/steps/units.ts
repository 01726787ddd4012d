import { UserError } from '../diagnostics.js';
import { run } from '../exec.js';
import { existsIn, symlinkIn } from '../build/rootfs.js';
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
