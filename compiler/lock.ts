/**
 * Exclusive locks with flock(2) semantics: the kernel releases a lock when its
 * holder dies, so a SIGKILLed build or publish never leaves a stale lock and
 * nobody has to guess from a pid (which means nothing across containers that
 * share a cache or a publish dir).
 *
 * Node has no flock(), so the lock is held by util-linux `flock --no-fork`
 * running `cat` on a pipe from us: when we exit, however we exit, the pipe
 * closes, cat ends and the kernel drops the lock. The lock file itself stays
 * (unlinking a flock file races with the next locker); after taking the lock
 * we write who holds it into it, for the message a waiter prints.
 */
import { closeSync, ftruncateSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { UserError } from './diagnostics.js';
import { requirePrograms, start } from './exec.js';
import { info } from './log.js';

export interface LockOptions {
  /** Fail at once when another process holds the lock (--no-wait) instead of waiting. */
  wait?: boolean;
  /** Give up waiting after this long (default: wait as long as it takes). */
  timeoutMs?: number;
}

const READY = 'treecast-lock-held';

/** Who holds a lock, as its holder wrote it ("" when nobody ever did). */
export function lockHolder(file: string): string {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return '';
  }
}

/** Run `fn` while holding the exclusive lock `file`; `what` names it in messages ("build lock of .treecast"). */
export async function withLock<T>(file: string, what: string, fn: () => Promise<T>, opts: LockOptions = {}): Promise<T> {
  const release = await acquire(file, what, opts);
  try {
    return await fn();
  } finally {
    await release();
  }
}

async function acquire(file: string, what: string, opts: LockOptions): Promise<() => Promise<void>> {
  await requirePrograms(['flock']);
  mkdirSync(path.dirname(file), { recursive: true });
  const wait = opts.wait ?? true;
  const args = ['--exclusive', '--no-fork'];
  if (!wait) args.push('--nonblock');
  else if (opts.timeoutMs !== undefined) args.push('--timeout', String(Math.max(1, Math.ceil(opts.timeoutMs / 1000))));
  // exit code 75 (EX_TEMPFAIL) when --nonblock or --timeout gives up, distinct from any error of flock itself.
  args.push('--conflict-exit-code', '75', file, 'sh', '-c', `echo ${READY}; exec cat >/dev/null`);
  let held!: () => void;
  const ready = new Promise<void>((resolve) => (held = resolve));
  const errors: string[] = [];
  const holder = start('flock', args, {
    stdinPipe: true,
    onLine: (line) => (line === READY ? held() : errors.push(line)),
  });
  const waitingNote = setTimeout(() => info(`waiting for the ${what}, held by ${lockHolder(file) || 'another process'}…`), 1000);
  const outcome = await Promise.race([ready.then(() => 'held' as const), holder.done]);
  clearTimeout(waitingNote);
  if (outcome !== 'held') {
    const who = lockHolder(file) || 'another process';
    if (outcome.exitCode === 75) {
      throw new UserError(wait ? `gave up waiting for the ${what} (${file}), held by ${who}` : `the ${what} (${file}) is held by ${who} (without --no-wait, treecast waits for it)`);
    }
    throw new UserError(`could not take the ${what} (${file}): ${errors.join(' ') || `flock exited with ${outcome.exitCode ?? outcome.signal}`}`);
  }
  writeHolder(file);
  return async () => {
    holder.closeStdin();
    await holder.done;
  };
}

function writeHolder(file: string): void {
  const fd = openSync(file, 'r+');
  try {
    ftruncateSync(fd, 0);
    writeSync(fd, `pid ${process.pid} on ${hostname()} since ${new Date().toISOString()}: treecast ${process.argv.slice(2).join(' ')}\n`);
  } finally {
    closeSync(fd);
  }
}
