/** GPG signing: the key that signs commits, summaries and SHA256SUMS. */
import { chmodSync, mkdirSync } from 'node:fs';
import { run } from '../exec.js';

export interface SigningKey {
  keyId: string;
  homedir: string;
}

/** A new signing key (no passphrase: CI signs unattended), returns its fingerprint. */
export async function generateKey(homedir: string, userId: string): Promise<string> {
  mkdirSync(homedir, { recursive: true });
  chmodSync(homedir, 0o700);
  await run('gpg', ['--homedir', homedir, '--batch', '--pinentry-mode', 'loopback', '--passphrase', '', '--quick-generate-key', userId, 'rsa3072', 'sign', 'never']);
  const r = await run('gpg', ['--homedir', homedir, '--batch', '--with-colons', '--list-secret-keys', userId]);
  const fpr = r.stdout.split('\n').find((l) => l.startsWith('fpr:'));
  if (!fpr) throw new Error('gpg made a key but does not list its fingerprint');
  return fpr.split(':')[9]!;
}

export async function exportPublicKey(key: SigningKey): Promise<string> {
  const r = await run('gpg', ['--homedir', key.homedir, '--batch', '--armor', '--export', key.keyId]);
  if (!r.stdout.includes('BEGIN PGP PUBLIC KEY BLOCK')) throw new Error(`gpg has no public key ${key.keyId} in ${key.homedir}`);
  return r.stdout;
}

/** Detached ASCII-armoured signature file `<file>.asc`. */
export async function signFile(key: SigningKey, file: string): Promise<string> {
  await run('gpg', ['--homedir', key.homedir, '--batch', '--yes', '--pinentry-mode', 'loopback', '--passphrase', '', '--local-user', key.keyId, '--armor', '--detach-sign', '--output', `${file}.asc`, file]);
  return `${file}.asc`;
}
