/**
 * One publisher per publish dir at a time, with flock(2) semantics (see
 * compiler/lock.ts): the kernel drops the lock when its holder dies, so a
 * SIGKILLed publish never wedges the next one and no pid is ever guessed at.
 */
import path from 'node:path';
import { withLock, type LockOptions } from '../lock.js';

export const LOCK_FILE = '.treecast-publish.lock';

export async function withPublishLock<T>(dir: string, fn: () => Promise<T>, opts: LockOptions = {}): Promise<T> {
  return withLock(path.join(dir, LOCK_FILE), `publish lock of ${dir}`, fn, opts);
}
