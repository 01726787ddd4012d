/**
 * The one module that touches paths inside an image root (STYLE.md 11).
 *
 * An image root is untrusted: overlays, files[] and postprocess scripts plant
 * symlinks in it, and treecast runs as root. Every function here takes the
 * root and an *image* path ("/etc/passwd") and resolves each component inside
 * the root the way the image itself would (an absolute link target restarts
 * at the image root, `..` never climbs above it: chroot / openat2
 * RESOLVE_IN_ROOT semantics). The final component is never followed when it
 * is the thing being created, replaced, removed, renamed or linked; it is
 * followed (inside the root) when it is read, listed or has its mode/owner
 * changed. Files are created with O_EXCL|O_NOFOLLOW so that even a link that
 * appeared after resolution is never written through.
 *
 * Nothing else runs in the root while a step runs (postprocess scripts run
 * before and their sandbox's PID namespace dies with them), so resolving in
 * user space is not racy here. Steps and outputs never import node:fs
 * (test/hostile/lint.test.ts enforces it).
 */
import {
  chmodSync, closeSync, constants, copyFileSync, fchmodSync, fchownSync, fstatSync, lchownSync, lstatSync,
  mkdirSync, openSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, rmdirSync, symlinkSync, writeSync,
} from 'node:fs';
import path from 'node:path';
import { UserError } from '../diagnostics.js';
import type { Stats } from 'node:fs';

const MAX_LINKS = 40;

/**
 * Host path for `imgPath` inside `root`, following symlinks in every component
 * but the last (which is what a create/replace acts on), or the last too.
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
    const st = lstatSync(candidate, { throwIfNoEntry: false });
    if (st?.isSymbolicLink() && (!isLast || followLast)) {
      if (++links > MAX_LINKS) throw new UserError(`too many levels of symbolic links resolving ${imgPath} in the image`);
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

/** The image path a host path inside the root stands for ("/" for the root). */
function imageName(root: string, host: string): string {
  return '/' + path.relative(root, host);
}

/** lstat of the entry at an image path (the last component not followed). */
export function lstatIn(root: string, imgPath: string): Stats | undefined {
  return lstatSync(resolveInRoot(root, imgPath), { throwIfNoEntry: false });
}

/** stat of what an image path leads to inside the image (links followed inside the root). */
export function statIn(root: string, imgPath: string): Stats | undefined {
  const st = lstatSync(resolveInRoot(root, imgPath, true), { throwIfNoEntry: false });
  // A link that still resolves to a link is dangling inside the image.
  return st && !st.isSymbolicLink() ? st : undefined;
}

export const existsIn = (root: string, imgPath: string): boolean => statIn(root, imgPath) !== undefined;
export const isDirIn = (root: string, imgPath: string): boolean => Boolean(statIn(root, imgPath)?.isDirectory());
export const isFileIn = (root: string, imgPath: string): boolean => Boolean(statIn(root, imgPath)?.isFile());

/** Names in an image directory, sorted; [] when it is missing or not a directory. */
export function readdirIn(root: string, imgDir: string): string[] {
  const host = resolveInRoot(root, imgDir, true);
  if (!lstatSync(host, { throwIfNoEntry: false })?.isDirectory()) return [];
  return readdirSync(host).sort();
}

/** Opens a regular file inside the image for reading; never a device, fifo or a link out. */
function openRegular(root: string, imgPath: string): number {
  const host = resolveInRoot(root, imgPath, true);
  const fd = openSync(host, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  if (!fstatSync(fd).isFile()) {
    closeSync(fd);
    throw new UserError(`${imgPath} in the image is not a regular file`);
  }
  return fd;
}

export function readFileIn(root: string, imgPath: string): Buffer {
  const fd = openRegular(root, imgPath);
  try {
    return readFileSync(fd);
  } finally {
    closeSync(fd);
  }
}

export function readTextIn(root: string, imgPath: string): string | undefined {
  return isFileIn(root, imgPath) ? readFileIn(root, imgPath).toString('utf8') : undefined;
}

/** mkdir -p inside the image, through the image's own symlinks (merged-/usr). */
export function mkdirInRoot(root: string, imgDir: string, mode = 0o755): string {
  const parts = imgDir.split('/').filter(Boolean);
  let cur = '/';
  for (const p of parts) {
    cur = path.posix.join(cur, p);
    const host = resolveInRoot(root, cur, true);
    const st = lstatSync(host, { throwIfNoEntry: false });
    if (!st) {
      // A dangling link's target may be several levels deep: every existing
      // component of `host` is already resolved, so creating the rest is safe.
      mkdirSync(host, { mode, recursive: true });
      chmodSync(host, mode); // the umask must not decide what an image holds
      continue;
    }
    if (!st.isDirectory()) throw new UserError(`${cur} exists in the image and is not a directory`);
  }
  return resolveInRoot(root, imgDir, true);
}

/** Remove what is at an image path (a final symlink is removed, never followed). */
export function removeInRoot(root: string, imgPath: string): void {
  const host = resolveInRoot(root, imgPath);
  if (host === root) throw new UserError('refusing to remove the image root');
  rmSync(host, { recursive: true, force: true });
}

/** Host path where a new entry for `imgPath` goes: parent made and resolved, any old non-directory entry removed. */
function slotFor(root: string, imgPath: string): string {
  mkdirInRoot(root, path.posix.dirname(path.posix.resolve('/', imgPath)));
  const host = resolveInRoot(root, imgPath);
  if (host === root) throw new UserError(`${imgPath} is the image root`);
  const existing = lstatSync(host, { throwIfNoEntry: false });
  if (existing?.isDirectory()) throw new UserError(`${imageName(root, host)}: a directory exists at this path in the image`);
  if (existing) rmSync(host, { force: true }); // replace, never write through a link or a hardlink
  return host;
}

export interface Attrs {
  mode?: number;
  uid?: number;
  gid?: number;
}

/**
 * Create or replace a regular file. Owner before mode: chown clears
 * setuid/setgid bits, so the mode must come last to keep them.
 */
export function writeFileIn(root: string, imgPath: string, data: string | Buffer, attrs: Attrs = {}): void {
  const host = slotFor(root, imgPath);
  const fd = openSync(host, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    for (let off = 0; off < buf.length; ) off += writeSync(fd, buf, off);
    fchownSync(fd, attrs.uid ?? 0, attrs.gid ?? 0);
    fchmodSync(fd, attrs.mode ?? 0o644);
  } finally {
    closeSync(fd);
  }
}

/** Copy a host file (a repository input, never an image path) to an image path. */
export function copyFileIn(root: string, hostSrc: string, imgPath: string, attrs: Attrs = {}): void {
  const src = openSync(hostSrc, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    if (!fstatSync(src).isFile()) throw new UserError(`${hostSrc} is not a regular file`);
    writeFileIn(root, imgPath, readFileSync(src), attrs);
  } finally {
    closeSync(src);
  }
}

/** Copy a regular file out of the image (links followed inside the root only) to a host path. */
export function copyFileOut(root: string, imgPath: string, hostDest: string, mode = 0o644): void {
  const fd = openRegular(root, imgPath);
  try {
    const out = openSync(hostDest, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, mode);
    try {
      const buf = readFileSync(fd);
      for (let off = 0; off < buf.length; ) off += writeSync(out, buf, off);
      fchmodSync(out, mode);
    } finally {
      closeSync(out);
    }
  } finally {
    closeSync(fd);
  }
}

/** Create or replace a symlink (its target is stored, never resolved). */
export function symlinkIn(root: string, imgPath: string, target: string, attrs: Omit<Attrs, 'mode'> = {}): void {
  const host = slotFor(root, imgPath);
  symlinkSync(target, host);
  lchownSync(host, attrs.uid ?? 0, attrs.gid ?? 0);
}

/** Make `imgPath` a symlink to `target` unless it already is a link; whatever was there goes. */
export function replaceWithLinkIn(root: string, imgPath: string, target: string): void {
  const st = lstatIn(root, imgPath);
  if (st?.isSymbolicLink()) return;
  if (st) removeInRoot(root, imgPath);
  symlinkIn(root, imgPath, target);
}

/** chmod what an image path leads to, inside the image. */
export function chmodIn(root: string, imgPath: string, mode: number): void {
  const host = resolveInRoot(root, imgPath, true);
  const st = lstatSync(host, { throwIfNoEntry: false });
  if (!st || st.isSymbolicLink()) throw new UserError(`${imgPath} does not exist in the image (or is a dangling symlink)`);
  unshare(host, st);
  chmodSync(host, mode);
}

/** chown an entry; a final symlink gets its own owner (lchown), never its target's. */
export function lchownIn(root: string, imgPath: string, uid: number, gid: number): void {
  const host = resolveInRoot(root, imgPath);
  const st = lstatSync(host, { throwIfNoEntry: false });
  if (st) unshare(host, st);
  lchownSync(host, uid, gid);
}

/**
 * A regular file with more than one link may be an object of the bare build
 * repository (a hardlink checkout, docs/layers.md): its mode and owner are
 * part of that object's checksum, so a chmod or chown through it would
 * corrupt the cache. Replace it by a private copy first.
 */
function unshare(host: string, st: Stats): void {
  if (!st.isFile() || st.nlink < 2) return;
  const tmp = `${host}.treecast-unshare`;
  copyFileSync(host, tmp, constants.COPYFILE_EXCL);
  lchownSync(tmp, st.uid, st.gid);
  chmodSync(tmp, st.mode & 0o7777); // after chown, which clears setuid bits
  renameSync(tmp, host);
}

/**
 * Before its xattrs are removed (stripXattrs in compiler/steps/commit.ts): an entry with
 * more than one link may share its inode with an object of the build
 * repository, and a removexattr through it would change that object. Give
 * such a regular file or symlink an inode of its own; the new one carries no
 * xattr at all (Node copies bytes, owner and mode only), so nothing is left to
 * remove from it. ostree does not record hardlinks, so the commit is the same.
 * `rel` is a path from a walk of the root that never follows links.
 * Returns whether the entry was replaced.
 */
export function unshareForXattrsIn(root: string, rel: string): boolean {
  const host = resolveInRoot(root, rel);
  const st = lstatSync(host, { throwIfNoEntry: false });
  if (!st || st.nlink < 2 || host === root) return false;
  if (st.isFile()) {
    unshare(host, st);
    return true;
  }
  if (st.isSymbolicLink()) {
    const tmp = `${host}.treecast-unshare`;
    symlinkSync(readlinkSync(host), tmp);
    lchownSync(tmp, st.uid, st.gid);
    renameSync(tmp, host);
    return true;
  }
  return false;
}

/** Remove a whole image root, the root directory itself included (a base step starts it again). */
export function removeRootDir(root: string): void {
  rmSync(root, { recursive: true, force: true });
}

/**
 * Fold the upper directory of an overlay mounted over `root` back into
 * `root` (compiler/steps/layer.ts), after the overlay is unmounted.
 * `mergedNames(dir)` is the listing the overlay showed for an image dir
 * that has an upper copy, taken while it was mounted: whatever `root` has
 * there beyond it was deleted through the overlay (a whiteout, or an opaque
 * directory that hides its lower half). Entries of the upper dir then move
 * into `root` by rename, replacing what was there: never a write through a
 * file of `root`, whose files may be hardlinks into the repository.
 * Whiteouts themselves (0/0 character devices) are not carried over.
 * Returns the number of entries changed.
 */
export function applyUpperIn(root: string, upper: string, mergedNames: Map<string, Set<string>>): number {
  let n = 0;
  const walk = (rel: string) => {
    const upperDir = path.join(upper, rel);
    const rootDir = path.join(root, rel);
    const merged = mergedNames.get(rel);
    if (merged) {
      for (const name of readdirSync(rootDir)) {
        if (!merged.has(name)) {
          rmSync(path.join(rootDir, name), { recursive: true, force: true });
          n++;
        }
      }
    }
    for (const name of readdirSync(upperDir).sort()) {
      const u = path.join(upperDir, name);
      const r = path.join(rootDir, name);
      const st = lstatSync(u);
      if (st.isCharacterDevice() && st.rdev === 0) continue; // whiteout
      const existing = lstatSync(r, { throwIfNoEntry: false });
      if (st.isDirectory()) {
        if (existing && !existing.isDirectory()) rmSync(r, { force: true });
        if (!existing?.isDirectory()) mkdirSync(r);
        lchownSync(r, st.uid, st.gid);
        chmodSync(r, st.mode & 0o7777);
        walk(path.join(rel, name));
      } else {
        if (existing?.isDirectory()) rmSync(r, { recursive: true, force: true });
        renameSync(u, r);
      }
      n++;
    }
  };
  walk('');
  return n;
}

/** rename inside the image: neither end's final component is followed. */
export function renameIn(root: string, from: string, to: string): void {
  const src = resolveInRoot(root, from);
  mkdirInRoot(root, path.posix.dirname(path.posix.resolve('/', to)));
  const dest = resolveInRoot(root, to);
  if (src === root || dest === root) throw new UserError(`cannot rename ${from} to ${to}: the image root is not movable`);
  renameSync(src, dest);
}

/** Remove an empty directory at an image path (the root itself included: base steps replace it). */
export function rmdirIn(root: string, imgPath = '/'): void {
  rmdirSync(imgPath === '/' ? root : resolveInRoot(root, imgPath));
}

/** Empty a directory of the image and give it `mode` (a link there is replaced by a real directory). */
export function emptyDirIn(root: string, imgDir: string, mode: number): void {
  const host = resolveInRoot(root, imgDir);
  if (host !== root) rmSync(host, { recursive: true, force: true });
  mkdirInRoot(root, imgDir, mode);
  chmodSync(host, mode);
}

/**
 * Copy an image directory to another place in the same image (/etc/skel into a
 * new home): links copied as links, owners set to uid:gid.
 */
export function copyDirWithinIn(root: string, fromImg: string, toImg: string, uid: number, gid: number): void {
  const from = resolveInRoot(root, fromImg, true);
  if (!lstatSync(from, { throwIfNoEntry: false })?.isDirectory()) return;
  const to = mkdirInRoot(root, toImg);
  const walk = (srcDir: string, destDir: string) => {
    for (const name of readdirSync(srcDir).sort()) {
      const s = path.join(srcDir, name);
      const d = path.join(destDir, name);
      const st = lstatSync(s);
      if (st.isDirectory()) {
        mkdirSync(d, { mode: st.mode & 0o777 });
        walk(s, d);
      } else if (st.isSymbolicLink()) symlinkSync(readlinkSync(s), d);
      else if (st.isFile()) copyFileSync(s, d, constants.COPYFILE_EXCL);
      else continue; // no devices or fifos in a home directory
      lchownSync(d, uid, gid);
      if (!st.isSymbolicLink()) chmodSync(d, st.mode & 0o777);
    }
  };
  walk(from, to);
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
      const existing = lstatIn(root, imgPath);
      if (st.isDirectory()) {
        if (existing?.isSymbolicLink()) {
          // merged-/usr style links (/lib -> usr/lib): merge into what the link points at, inside the image
          if (!isDirIn(root, imgPath)) throw new UserError(`${imgPath} is a symlink in the image that does not lead to a directory`);
        } else if (existing && !existing.isDirectory()) {
          throw new UserError(`${imgPath}: the overlay has a directory where the image has a file`);
        } else if (!existing) {
          mkdirInRoot(root, imgPath, st.mode & 0o7777);
        }
        chmodIn(root, imgPath, st.mode & 0o7777);
        walk(rel);
      } else if (st.isSymbolicLink()) {
        if (existing?.isDirectory()) throw new UserError(`${imgPath}: the overlay has a symlink where the image has a directory`);
        symlinkIn(root, imgPath, readlinkSync(from));
        count++;
      } else if (st.isFile()) {
        if (existing?.isDirectory()) throw new UserError(`${imgPath}: the overlay has a file where the image has a directory`);
        copyFileIn(root, from, imgPath, { mode: st.mode & 0o7777 });
        count++;
      } else {
        throw new UserError(`${from}: only directories, regular files and symlinks can be copied into an image`);
      }
    }
  };
  walk('');
  return count;
}

/** Every entry of a tree as (relative path, lstat), sorted, never following links: for hashing and walks. */
export function* walkTree(dir: string, rel = ''): Generator<[string, Stats]> {
  const entries = readdirSync(path.join(dir, rel)).sort();
  for (const name of entries) {
    const r = rel ? `${rel}/${name}` : name;
    const st = lstatSync(path.join(dir, r));
    yield [r, st];
    if (st.isDirectory()) yield* walkTree(dir, r);
  }
}

/** Every entry under an image directory (links not followed), as image paths. */
export function* walkIn(root: string, imgDir = '/'): Generator<[string, Stats]> {
  const host = resolveInRoot(root, imgDir, true);
  if (!lstatSync(host, { throwIfNoEntry: false })?.isDirectory()) return;
  const base = imageName(root, host);
  for (const [rel, st] of walkTree(host)) yield [path.posix.join(base, rel), st];
}

/** ostree stores only dirs, regular files and symlinks: drop device nodes, fifos and sockets. */
export function removeSpecialFilesIn(root: string): number {
  let n = 0;
  for (const [p, st] of walkIn(root)) {
    if (!st.isDirectory() && !st.isFile() && !st.isSymbolicLink()) {
      removeInRoot(root, p);
      n++;
    }
  }
  return n;
}

/**
 * For every directory of an overlay's upper dir: the names the mounted
 * overlay shows there (applyUpperIn's deletions). Whiteouts hide nothing in
 * a directory that has no upper copy, so only those are listed.
 */
export function mergedListings(upper: string, merged: string): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  const walk = (rel: string) => {
    out.set(rel, new Set(readdirSync(path.join(merged, rel))));
    for (const e of readdirSync(path.join(upper, rel), { withFileTypes: true })) if (e.isDirectory()) walk(path.join(rel, e.name));
  };
  walk('');
  return out;
}

/** The target of a symlink at an image path (the link itself is not followed). */
export function readlinkIn(root: string, imgPath: string): string {
  return readlinkSync(resolveInRoot(root, imgPath));
}
