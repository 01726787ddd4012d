/**
 * Encrypted diskless roots (`outputs.diskless.encrypt`, docs/nodes.md).
 *
 * The squashfs is published as AES-256-CTR ciphertext: the raw stream
 * `openssl enc -aes-256-ctr -K KEY -iv IV` writes and reads, with no header,
 * so a node's initramfs opens it with stock Debian tools (curl | openssl enc -d,
 * then sha256sum) while it downloads, in the RAM the plain squashfs would
 * take. Not LUKS2: making a LUKS volume needs device-mapper on the build host
 * (absent in containers and CI runners), and dracut's livenet hands
 * dmsquash-live a file, not a block device. CTR has no integrity of its own:
 * the private key file carries the SHA-256 and size of the plaintext, which
 * the node checks before it mounts anything, so a changed ciphertext in the
 * public tree is refused, and the hash reveals nothing to whom lacks the key.
 *
 * Every build makes a new key and IV (random, never derived from the content):
 * the same key never encrypts two different images, and rotating is building.
 */
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, mkdirSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { writeFileDurable } from '../durable.js';
import { UserError } from '../diagnostics.js';
import { describeArtifact } from '../outputs/artifact.js';
import type { Artifact } from '../outputs/output.js';

export const ENCRYPTED_SQUASHFS_FILE = 'rootfs.squashfs.enc';
export const KEY_FILE = 'rootfs.key';

export interface RootKey {
  cipher: 'aes-256-ctr';
  /** 32 bytes, hex. */
  key: string;
  /** 16 bytes, hex: the initial counter block. */
  iv: string;
  /** Of the plaintext squashfs: the node refuses a root that does not match. */
  sha256: string;
  size: number;
}

/** Encrypt `plain` into `out` with a fresh key; returns the key (never written next to `out`). */
export async function encryptRoot(plain: string, out: string, signal?: AbortSignal): Promise<RootKey> {
  const key = randomBytes(32);
  const iv = randomBytes(16);
  const hash = createHash('sha256');
  const tap = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      done(null, chunk);
    },
  });
  await pipeline(createReadStream(plain), tap, createCipheriv('aes-256-ctr', key, iv), createWriteStream(out, { mode: 0o644 }), { signal });
  return { cipher: 'aes-256-ctr', key: key.toString('hex'), iv: iv.toString('hex'), sha256: hash.digest('hex'), size: statSync(plain).size };
}

/** The key file a node fetches: `name=value` lines a POSIX shell in the initramfs reads with sed. */
export function renderKeyFile(image: string, version: string, k: RootKey): string {
  return [
    `# treecast root key: ${image} ${version} (private: never under the public tree)`,
    `cipher=${k.cipher}`,
    `key=${k.key}`,
    `iv=${k.iv}`,
    `sha256=${k.sha256}`,
    `size=${k.size}`,
    '',
  ].join('\n');
}

export function parseKeyFile(text: string, where: string): RootKey {
  const v = new Map(text.split('\n').filter((l) => /^[a-z0-9]+=/.test(l)).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  const k = { cipher: v.get('cipher'), key: v.get('key'), iv: v.get('iv'), sha256: v.get('sha256'), size: Number(v.get('size')) };
  if (k.cipher !== 'aes-256-ctr' || !/^[0-9a-f]{64}$/.test(k.key ?? '') || !/^[0-9a-f]{32}$/.test(k.iv ?? '') || !/^[0-9a-f]{64}$/.test(k.sha256 ?? '') || !Number.isInteger(k.size)) {
    throw new UserError(`${where} is not a treecast root key file`);
  }
  return k as RootKey;
}

/**
 * Where a build keeps the key of an encrypted version until publish copies it
 * to the private tree: in the cache, outside out/ (which publish copies whole
 * into the public tree), 0700/0600.
 */
export function buildKeyPath(cacheDir: string, image: string, version: string): string {
  return path.join(cacheDir, 'private', 'keys', image, version, KEY_FILE);
}

/** The same place, from a version's out/ directory (<cache>/out/<image>/<version>). */
export function buildKeyPathOf(outVersionDir: string): string {
  const version = path.basename(outVersionDir);
  const image = path.basename(path.dirname(outVersionDir));
  return buildKeyPath(path.dirname(path.dirname(path.dirname(outVersionDir))), image, version);
}

/** Under the private tree beside the public one; served to the image's nodes only (serve). */
export function privateKeyPath(privateDir: string, image: string, version: string): string {
  return path.join(privateDir, 'keys', image, version, KEY_FILE);
}

export function privateKeyUrl(publicUrl: string, image: string, version: string): string {
  return `${publicUrl}/private/keys/${encodeURIComponent(image)}/${encodeURIComponent(version)}/${KEY_FILE}`;
}

export function writeKeyFile(file: string, text: string): void {
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  writeFileDurable(file, text, 0o600);
}

/**
 * An encrypted image's artifacts as published: the squashfs replaced by its
 * ciphertext (the plaintext removed from the staging dir), the key written
 * durably to `keyFile` before the version directory can appear.
 */
export async function sealArtifacts(image: string, version: string, artifacts: Artifact[], keyFile: string, signal?: AbortSignal): Promise<Artifact[]> {
  const plain = artifacts.find((a) => a.type === 'squashfs');
  if (!plain) throw new UserError(`${image}: outputs.diskless.encrypt needs the squashfs output's file, and none was written`);
  const out = path.join(path.dirname(plain.path), ENCRYPTED_SQUASHFS_FILE);
  const key = await encryptRoot(plain.path, out, signal);
  rmSync(plain.path);
  writeKeyFile(keyFile, renderKeyFile(image, version, key));
  return [...artifacts.filter((a) => a !== plain), await describeArtifact('squashfs-encrypted', out)];
}
