/**
 * Writes that survive a power loss. A rename is only as durable as the data
 * behind it: without fsync, a crash after `rename` can leave a published
 * index.json, kickstart or SHA256SUMS with its new name and no content. So
 * everything that publishes something is written to a temp name, fsynced,
 * renamed, and then the directory holding the new name is fsynced (the
 * rename itself lives in the directory). The same order ostree uses for
 * objects, refs and the summary.
 */
import { closeSync, constants, fchmodSync, fsyncSync, lstatSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/** fsync a file or a directory by path. */
export function fsyncPath(p: string): void {
  const fd = openSync(p, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** fsync every regular file and directory of a tree (a version dir: a handful of files), deepest first. */
export function syncTree(dir: string): void {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) syncTree(p);
    else if (e.isFile()) fsyncPath(p);
  }
  fsyncPath(dir);
}

/** rename, then fsync the directories that hold the old and the new name. */
export function renameDurable(from: string, to: string): void {
  renameSync(from, to);
  fsyncPath(path.dirname(to));
  if (path.dirname(from) !== path.dirname(to)) fsyncPath(path.dirname(from));
}

/** Replace `file` so that readers see the old or the new content, never a part, even after a power loss. */
export function writeFileDurable(file: string, content: string | Buffer, mode = 0o644): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.tmp-${process.pid}`);
  // O_NOFOLLOW: the temp name is never a link to somewhere else (the private tree holds secrets).
  const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, mode);
  try {
    // A temp file left by a killed run keeps its old mode through O_CREAT: set it before any byte is written.
    fchmodSync(fd, mode);
    writeFileSync(fd, content);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameDurable(tmp, file);
}

/** Point `link` at `target` atomically (a temp link renamed over it), durably. */
export function replaceSymlinkDurable(link: string, target: string): void {
  const tmp = path.join(path.dirname(link), `.${path.basename(link)}.tmp-${process.pid}`);
  if (lstatSync(tmp, { throwIfNoEntry: false })) rmSync(tmp, { force: true });
  symlinkSync(target, tmp);
  renameDurable(tmp, link);
}
