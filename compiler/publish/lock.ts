/**
 * One publisher at a time: an exclusive lock file in the publish dir holding
 * the owner's pid. A lock left by a killed publisher (pid gone) is taken over,
 * so a SIGKILL never wedges the next publish.
 */
import { closeSync, linkSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import { UserError } from '../diagnostics.js';

export const LOCK_FILE = '.treecast-publish.lock';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export async function withPublishLock<T>(dir: string, fn: () => Promise<T>, waitMs = 60_000): Promise<T> {
  const file = path.join(dir, LOCK_FILE);
  const deadline = Date.now() + waitMs;
  for (;;) {
    if (tryCreate(file)) break;
    const content = readFileSafe(file);
    const owner = Number(content.trim());
    if (!owner || !alive(owner)) {
      // Stale: its publisher died. Remove it only if it still is the file we judged.
      if (readFileSafe(file) === content) rmSync(file, { force: true });
      continue;
    }
    if (Date.now() > deadline) throw new UserError(`another treecast publish (pid ${owner}) holds ${file}; try again when it is done`);
    await new Promise((r) => setTimeout(r, 200));
  }
  try {
    return await fn();
  } finally {
    rmSync(file, { force: true });
  }
}

/**
 * Create the lock file with our pid already in it: written to a private temp
 * file, then hard-linked into place (fails if the lock exists). With
 * open('wx') + write, a second publisher could read the lock in between,
 * find no pid, take it for stale and remove it: two publishers at once.
 */
function tryCreate(file: string): boolean {
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, `${process.pid}\n`);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(tmp, file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return false;
  } finally {
    rmSync(tmp, { force: true });
  }
}

function readFileSafe(f: string): string {
  try {
    return readFileSync(f, 'utf8');
  } catch {
    return '';
  }
}
