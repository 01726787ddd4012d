import { rmdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { hostPathExists } from '../compile/host-files.js';
import { readdirIn } from '../compile/rootfs.js';
import { EXIT, UsageError, UserError } from '../diagnostics.js';
import { interruptSignal } from '../interrupt.js';
import { openRepo } from '../repo.js';
import { checkoutBooted, resolveImageVersion } from '../shell/image-version.js';
import { printJson, type Command } from './command.js';

export const unpackCommand: Command = {
  name: 'unpack',
  summary: 'write the booted layout of a built or published image version to a new directory',
  usage: 'treecast unpack <image>[@version] DIR [--from PUBLISH_DIR] [--json]',
  help: [
    'Checks the version out into DIR (new, or an empty directory) with owners, modes and links as committed,',
    'and /usr/etc at /etc: what a booted host and the artifacts show. DIR is a full copy: editing it changes',
    'nothing in the cache. <image> is an image name (its newest build), name@version, an OSTree ref or a',
    'commit id, looked up in the build cache and then the publish dir.',
    'Options:',
    '  --from DIR   look only in this publish dir (its repo/ and images/)',
  ].join('\n'),
  options: { from: { type: 'string' } },
  async run(ctx) {
    if (ctx.positionals.length !== 2) throw new UsageError('unpack needs an image and a directory: treecast unpack edge-host@2026.11.1 /tmp/edge-host');
    const [spec, dirArg] = ctx.positionals as [string, string];
    const dir = path.resolve(dirArg);
    if (hostPathExists(dir)) {
      if (!statSync(dir).isDirectory()) throw new UserError(`${dirArg}: exists and is not a directory`);
      if (readdirIn(dir, '/').length > 0) throw new UserError(`${dirArg}: exists and is not empty (unpack into a new directory)`);
      rmdirSync(dir); // ostree checkout makes the directory itself
    }
    const repo = openRepo({ repo: ctx.repo });
    const from = ctx.values.from !== undefined ? path.resolve(String(ctx.values.from)) : undefined;
    const v = await resolveImageVersion(repo, spec, from);
    await checkoutBooted(v, dir, 'copy', interruptSignal());
    if (ctx.json) printJson({ spec, commit: v.commit, repo: v.repo, dir });
    else process.stdout.write(`${spec} (${v.commit.slice(0, 12)}) unpacked to ${dir}\n`);
    return EXIT.ok;
  },
};
