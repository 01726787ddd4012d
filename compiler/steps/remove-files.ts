import { removeInRoot, walkIn } from '../compile/rootfs.js';
import type { Step } from './step.js';

/** `/usr/share/doc/**` style globs -> a RegExp over image paths. Pure. */
export function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*' && glob[i + 1] === '*') {
      i++;
      // `**/` is zero or more whole directories: `/usr/**/foo` must not match /usr/lib/barfoo.
      if (glob[i + 1] === '/') i++, (re += '(?:.*/)?');
      else re += '.*';
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

export const removeFiles: Step = {
  name: 'remove-files',
  tools: [],
  applies: (m) => (m['remove-files']?.length ?? 0) > 0,
  async run(ctx) {
    const patterns = ctx.manifest['remove-files']!.map(globToRegExp);
    const doomed: string[] = [];
    for (const [p] of walkIn(ctx.root)) {
      // Once a directory is removed, its children go with it.
      if (doomed.length && p.startsWith(doomed[doomed.length - 1]! + '/')) continue;
      if (patterns.some((re) => re.test(p))) doomed.push(p);
    }
    for (const p of doomed) removeInRoot(ctx.root, p);
    return `${doomed.length} paths removed`;
  },
};
