/**
 * One `treecast shell` session: a throwaway writable view of an image
 * version in the postprocess sandbox. The version is checked out under the
 * cache's shell/ (from the bare build repository as hardlinks: no bytes
 * copied), an overlay goes over it (layer.ts: a write copies the file up, so
 * no object of the repository is ever written through), and the command runs
 * in bwrap on the merged view (sandbox.ts: no network, nothing of the host).
 * The upper dir is what the session changed: capture.ts reads it. The
 * scratch dir goes in every case, Ctrl-C included (interrupt.ts aborts the
 * program, the `finally` blocks unmount and remove).
 */
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ensureDir } from '../compile/host-files.js';
import { repoMode } from '../compile/ostree.js';
import { existsIn, mergedListings, removeRootDir } from '../compile/rootfs.js';
import { UserError } from '../diagnostics.js';
import { run } from '../exec.js';
import type { Repo } from '../repo.js';
import { mountLayer } from '../steps/layer.js';
import { hostProcEntries, sandboxArgs } from '../steps/sandbox.js';
import { captureSession, writeCapture, type CaptureResult } from './capture.js';
import { checkoutBooted, type ImageVersion } from './image-version.js';

export interface SessionOptions {
  /** The command; empty: a login shell (the image's /bin/bash, else /bin/sh). */
  command: string[];
  /** Write what changed as an overlay into this directory (inside the repository). */
  capture?: string;
  signal?: AbortSignal;
}

export interface SessionResult {
  exitCode: number;
  capture?: CaptureResult;
}

/** Only a plain terminal name reaches the sandbox: it is the one host variable an interactive shell needs. */
const terminalEnv = (): Record<string, string> => {
  const term = process.env.TERM;
  return process.stdin.isTTY && term && /^[\w.+-]{1,64}$/.test(term) ? { TERM: term } : {};
};

/**
 * Where sessions keep their checkout and overlay: in the cache dir, beside
 * the build repository (a hardlink checkout needs the same file system), but
 * not in tmp/, which every build and gc sweep (unmounting what is mounted
 * there): a build started from another terminal must not pull a running
 * session's overlay away. Each session's dir starts with its pid.
 */
export const sessionsDir = (repo: Repo) => path.join(repo.cacheDir, 'shell');

export async function runSession(repo: Repo, v: ImageVersion, opts: SessionOptions): Promise<SessionResult> {
  const sessions = sessionsDir(repo);
  ensureDir(sessions);
  await sweepDeadSessions(sessions);
  const scratch = mkdtempSync(path.join(sessions, `${process.pid}-`));
  const lower = path.join(scratch, 'lower');
  let mounted: string | undefined;
  try {
    await checkoutBooted(v, lower, repoMode(v.repo) === 'bare' ? 'hardlinks' : 'copy', opts.signal);
    const { upper, merged } = await mountLayer(lower, path.join(scratch, 'layer'), 'shell');
    mounted = merged;
    const command = opts.command.length ? opts.command : defaultShell(merged);
    const r = await run('bwrap', sandboxArgs(merged, { network: false, procPresent: hostProcEntries(), env: terminalEnv() }, command), {
      signal: opts.signal,
      interactive: true,
      allowFailure: true,
      // bwrap clears the environment inside; only PATH reaches bwrap itself.
      env: { PATH: process.env.PATH },
      cleanEnv: true,
    });
    let capture: CaptureResult | undefined;
    if (opts.capture) {
      // While mounted: the names the overlay shows are how deletions are told (as applyUpperIn does).
      const names = mergedListings(upper, merged);
      await run('umount', [merged]);
      mounted = undefined;
      capture = writeCapture(repo.root, opts.capture, upper, captureSession(upper, lower, names));
    }
    return { exitCode: r.exitCode, capture };
  } finally {
    if (mounted) await run('umount', [mounted]);
    removeRootDir(scratch);
  }
}

function defaultShell(root: string): string[] {
  if (existsIn(root, '/bin/bash')) return ['/bin/bash', '-l'];
  if (existsIn(root, '/bin/sh')) return ['/bin/sh', '-l'];
  throw new UserError('the image has neither /bin/bash nor /bin/sh: name a program of the image after --');
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/** What a killed session (SIGKILL: no `finally` ran) left: its overlay unmounted, its dir removed. */
async function sweepDeadSessions(sessions: string): Promise<void> {
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4]?.replace(/\\040/g, ' '))
    .filter((m): m is string => Boolean(m));
  for (const name of readdirSync(sessions)) {
    const pid = /^(\d+)-/.exec(name)?.[1];
    if (!pid || alive(Number(pid))) continue;
    const dir = path.join(sessions, name) + '/';
    for (const m of mounts.filter((x) => x.startsWith(dir)).sort((a, b) => b.length - a.length)) await run('umount', ['-l', m]);
    removeRootDir(dir);
  }
}
