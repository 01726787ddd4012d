/**
 * Files on the build host that are not inside an image: cache directories,
 * scratch files in a build's work dir, and the artifacts an output writes
 * into its staging directory. Steps and outputs reach the host file system
 * only through this module (for those) and rootfs.ts (for image paths), so a
 * look at the imports shows that no step joins an image path by hand.
 */
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, createReadStream, existsSync, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';

/** Does a host path exist (a program, a /proc entry, a repository input)? Never an image path. */
export function hostPathExists(p: string): boolean {
  return existsSync(p);
}

export function ensureDir(dir: string): void {
  mkdirSync(dir, { recursive: true });
}

/** Write a file we generate (boot.ipxe, a staged script): never an image path. */
export function writeHostFile(file: string, data: string | Buffer, mode = 0o644): void {
  writeFileSync(file, data);
  chmodSync(file, mode);
}

/** Copy a repository input (already checked by the input policy) to scratch space. */
export function copyHostFile(src: string, dest: string, mode = 0o644): void {
  copyFileSync(src, dest);
  chmodSync(dest, mode);
}

export function removeHostFile(file: string): void {
  rmSync(file, { force: true });
}

export function renameHostFile(from: string, to: string): void {
  renameSync(from, to);
}

export function hostFileSize(file: string): number {
  return statSync(file).size;
}

export async function fileSha256(p: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(p)) h.update(chunk as Buffer);
  return h.digest('hex');
}

