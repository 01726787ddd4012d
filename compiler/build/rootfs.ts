/**
 * File operations inside an image root that never escape it. Image symlinks
 * are resolved the way the image itself would see them (absolute targets
 * restart at the image root, like a chroot), so a hostile `/etc -> /` link in
 * a base tree or overlay cannot make us write on the build host.
 */
import { chmodSync, chownSync, copyFileSync, lchownSync, lstatSync, mkdirSync, readdirSync, readlinkSync, rmSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { UserError } from '../diagnostics.js';
import type { Stats } from 'node:fs';

const MAX_LINKS = 40;

/**
 * Host path for `imgPath` inside `root`, following symlinks in every component
 * but the last (which is what a create/replace acts on).
 */
export function resolveInRoot(root: string, imgPath: string, followLast = false): string {
  let parts = imgPath.split('/').filter((p) => p && p !== '.');
  let resolved: string[] = [];
  let links = 0;
  while (parts.length) {
    const part = parts.shift()!;
    if (part === '..') {
      resolved.pop(); // `..` at the image root stays at the root, like the kernel does
      continue;
    }
    const candidate = path.join(root, ...resolved, part);
    const isLast = parts.length === 0;
    let st;
    try {
      st = lstatSync(candidate);
    } catch {
      st = undefined;
    }
    if (st?.isSymbolicLink() && (!isLast || followLast)) {
      if (++links > MAX_LINKS) throw new UserError(`too many levels of symbolic links resolving ${imgPath}`);
      const target = readlinkSync(candidate);
      const targetParts = target.split('/').filter((p) => p && p !== '.');
      if (target.startsWith('/')) resolved = [];
      parts = [...targetParts, ...parts];
      continue;
    }
    resolved.push(part);
  }
  return path.join(root, ...resolved);
}

/** mkdir -p inside the image, through the image's own symlinks. */
export function mkdirInRoot(root: string, imgDir: string, mode = 0o755): string {
  const parts = imgDir.split('/').filter(Boolean);
  let cur = '/';
  for (const p of parts) {
    cur = path.posix.join(cur, p);
    const host = resolveInRoot(root, cur, true);
    let st;
    try {
      st = lstatSync(host);
    } catch {
      mkdirSync(host, { mode });
      continue;
    }
    if (!st.isDirectory()) throw new UserError(`${cur} exists in the image and is not a directory`);
  }
  return resolveInRoot(root, imgDir, true);
}

/** Remove what is at an image path (not following a final symlink). */
export function removeInRoot(root: string, imgPath: string): void {
  rmSync(resolveInRoot(root, imgPath), { recursive: true, force: true });
}

/**
 * Copy a directory tree from the repository over the image root: directories
 * merge, files and symlinks replace, symlinks are copied as links (never
 * followed), owners become root:root, permission bits are kept.
 */
export function copyTreeInto(srcDir: string, root: string, destImgDir = '/'): number {
  let count = 0;
  const walk = (srcRel: string) => {
    const src = path.join(srcDir, srcRel);
    const entries = readdirSync(src, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1));
    for (const e of entries) {
      const rel = path.join(srcRel, e.name);
      const from = path.join(srcDir, rel);
      const imgPath = path.posix.join(destImgDir, rel);
      const st = lstatSync(from);
      const to = resolveInRoot(root, imgPath);
      let existing;
      try {
        existing = lstatSync(to);
      } catch {
        existing = undefined;
      }
      if (st.isDirectory()) {
        if (existing?.isSymbolicLink()) {
          // merged-/usr style links (/lib -> usr/lib): merge into what the link points at
          const through = resolveInRoot(root, imgPath, true);
          if (!lstatSync(through, { throwIfNoEntry: false })?.isDirectory()) throw new UserError(`${imgPath} is a symlink in the image that does not lead to a directory`);
        } else if (existing && !existing.isDirectory()) {
          throw new UserError(`${imgPath}: the overlay has a directory where the image has a file`);
        } else if (!existing) {
          mkdirSync(to);
          chownSync(to, 0, 0);
          chmodSync(to, st.mode & 0o7777);
        } else {
          chmodSync(to, st.mode & 0o7777);
        }
        walk(rel);
      } else if (st.isSymbolicLink()) {
        if (existing) rmSync(to, { recursive: true, force: true });
        symlinkSync(readlinkSync(from), to);
        lchownSync(to, 0, 0);
        count++;
      } else if (st.isFile()) {
        if (existing?.isDirectory()) throw new UserError(`${imgPath}: the overlay has a file where the image has a directory`);
        if (existing) rmSync(to, { force: true }); // replace, never write through a hardlink
        copyFileSync(from, to);
        chownSync(to, 0, 0); // chown clears setuid bits: chmod comes after it
        chmodSync(to, st.mode & 0o7777);
        count++;
      } else {
        throw new UserError(`${path.join(srcDir, rel)}: only directories, regular files and symlinks can be copied into an image`);
      }
    }
  };
  walk('');
  return count;
}

/** Every entry of a tree as (relative path, lstat), sorted: for hashing and comparisons. */
export function* walkTree(dir: string, rel = ''): Generator<[string, Stats]> {
  const entries = readdirSync(path.join(dir, rel)).sort();
  for (const name of entries) {
    const r = rel ? `${rel}/${name}` : name;
    const st = lstatSync(path.join(dir, r));
    yield [r, st];
    if (st.isDirectory()) yield* walkTree(dir, r);
  }
}
