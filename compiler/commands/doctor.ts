import { EXIT } from '../diagnostics.js';
import { PROVIDERS, which } from '../exec.js';
import { printJson, type Command } from './command.js';

/** Programs treecast drives, and what each is for. */
const TOOLS: [string, string][] = [
  ['ostree', 'commits, repositories, deploys'],
  ['getfattr', 'strips xattrs before a commit (with setfattr)'],
  ['setfattr', 'strips xattrs before a commit'],
  ['mmdebstrap', 'Debian root filesystems'],
  ['mksquashfs', 'squashfs artifacts'],
  ['zstd', 'tarball compression'],
  ['tar', 'tarball artifacts'],
  ['gpg', 'signing'],
  ['bwrap', 'sandboxed postprocess scripts'],
  ['setpriv', 'clears the capability bounding set inside the sandbox'],
  ['flock', 'build and publish locks'],
  ['systemctl', 'enabling units in images'],
  ['rsync', 'publish --to (uploads)'],
  ['git', 'change detection, commit metadata'],
  ['qemu-system-x86_64', 'boot tests (install-test)'],
  ['mkfs.ext4', 'boot test disks (install-test)'],
  ['sfdisk', 'disk images (outputs.disk)'],
  ['extlinux', 'the bootloader of disk images'],
];

export const doctorCommand: Command = {
  name: 'doctor',
  summary: 'check that the programs treecast drives are installed',
  usage: 'treecast doctor',
  help: 'Prints each program with its path, or the Debian package to install. Exit 1 when one is missing.',
  options: {},
  async run(ctx) {
    const rows = await Promise.all(TOOLS.map(async ([tool, purpose]) => ({ tool, purpose, path: await which(tool), package: PROVIDERS[tool] ?? tool })));
    const missing = rows.filter((r) => !r.path);
    if (ctx.json) printJson({ ok: missing.length === 0, tools: rows });
    else {
      for (const r of rows) process.stdout.write(`${r.path ? 'ok     ' : 'MISSING'} ${r.tool.padEnd(20)} ${r.path ?? `apt-get install ${r.package}`}  (${r.purpose})\n`);
      if (missing.length) process.stdout.write(`\nInstall the missing programs: apt-get install ${[...new Set(missing.map((m) => m.package))].join(' ')}\n`);
    }
    return missing.length ? EXIT.invalid : EXIT.ok;
  },
};
