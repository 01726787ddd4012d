import path from 'node:path';
import { EXIT } from '../diagnostics.js';
import { exportPublicKey, generateKey } from '../publish/gpg.js';
import { openRepo } from '../repo.js';
import { printJson, type Command } from './command.js';

export const keygenCommand: Command = {
  name: 'keygen',
  summary: 'make a GPG signing key for a new published repository',
  usage: 'treecast keygen [--homedir DIR] [--name "treecast signing key <ops@example.com>"]',
  help: 'Creates a passphrase-less signing key (CI signs unattended; keep the homedir secret) and prints the public key hosts import,\nplus the treecast.yaml lines that enable signing.',
  options: { homedir: { type: 'string' }, name: { type: 'string' } },
  async run(ctx) {
    const repo = openRepo({ repo: ctx.repo });
    const homedir = path.resolve(repo.root, String(ctx.values.homedir ?? '.treecast/gnupg'));
    const fpr = await generateKey(homedir, String(ctx.values.name ?? 'treecast signing key <treecast@localhost>'));
    const pub = await exportPublicKey({ keyId: fpr, homedir });
    if (ctx.json) printJson({ fingerprint: fpr, homedir, publicKey: pub });
    else {
      process.stdout.write(pub);
      process.stderr.write(`\nkey ${fpr} in ${homedir}\nadd to treecast.yaml:\n  signing: { gpg-key: ${fpr}, gpg-homedir: ${path.relative(repo.root, homedir) || '.'} }\nhosts import the key above: ostree remote gpg-import --keyring=KEYFILE <remote>\n`);
    }
    return EXIT.ok;
  },
};
