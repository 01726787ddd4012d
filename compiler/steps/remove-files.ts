import { rmSync } from 'node:fs';
import { walkTree } from '../build/rootfs.js';
import type { Step } from './step.js';

/** `/usr/share/doc/**` style globs -> a RegExp over image paths. Pure. */
export function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*' && glob[i + 1] === '*') {
      re += '.*';
      i++;
      if (glob[i + 1] === '/') i++, (re += '(?:/|$)?');
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
    for (const [rel] of walkTree(ctx.root)) {
      const p = `/${rel}`;
      // Once a directory is removed, its children go with it.
      if (doomed.length && p.startsWith(doomed[doomed.length - 1]! + '/')) continue;
      if (patterns.some((re) => re.test(p))) doomed.push(p);
    }
    for (const p of doomed) rmSync(ctx.root + p, { recursive: true, force: true });
    return `${doomed.length} paths removed`;
  },
};
