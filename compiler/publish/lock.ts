/**
 * One publisher at a time: an exclusive lock file in the publish dir holding
 * the owner's pid. A lock left by a killed publisher (pid gone) is taken over,
 * so a SIGKILL never wedges the next publish.
 */
import { closeSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
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
    try {
      const fd = openSync(file, 'wx');
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const owner = Number(readFileSafe(file).trim());
      if (!owner || !alive(owner)) {
        rmSync(file, { force: true }); // stale: its publisher died
        continue;
      }
      if (Date.now() > deadline) throw new UserError(`another treecast publish (pid ${owner}) holds ${file}; try again when it is done`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(file, { force: true });
  }
}

function readFileSafe(f: string): string {
  try {
    return readFileSync(f, 'utf8');
  } catch {
    return '';
  }
}
