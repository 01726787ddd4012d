/**
 * Helpers for the black-box confinement tests (confinement.test.ts): hostile
 * symlink targets that can only ever reach a canary directory, the real CLI
 * run asynchronously (so several builds share the 2 cores), and a scan of
 * everything a build or publish produced for bytes of the canary files.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { BIN } from '../helpers/cli.js';
import { sh } from '../helpers/build-fixture.js';
import { SECRET_TEXT, type Canaries } from './canary.js';

/**
 * Contents of the files makeCanaries() writes. Any of them inside an artifact
 * means a step or an output read through a link out of the image root.
 */
export const CANARY_MARKERS: readonly string[] = [
  SECRET_TEXT.trim(),
  'root:x:0:0:canary:',
  'canary host key',
  '0123456789abcdef0123456789abcdef',
  'canary kernel',
  'canary initramfs',
];

/**
 * A relative target that climbs far above any image root on the build host
 * (the deepest link these tests plant sits ~12 directories below /) and then
 * names `hostPath`. Naively followed it reaches `hostPath`; inside the image
 * (`..` stops at the image root) it is the image's own `hostPath`.
 */
export function escapingRelative(hostPath: string): string {
  if (!path.isAbsolute(hostPath)) throw new Error(`not absolute: ${hostPath}`);
  return '../'.repeat(24) + hostPath.slice(1);
}

/** Where a link target leads when the host follows it from anywhere (the `..` run clamps at /). */
export function hostAim(target: string): string {
  return path.posix.resolve('/', target.replace(/^(\.\.\/)+/, '/'));
}

/**
 * The safety net of the whole file: the code under test really escapes, so
 * every hostile target must lead into this test's own canary directory under
 * the temp dir, never to a real host path. Throws before anything runs.
 */
export function assertAimsAtCanary(c: Canaries, target: string): void {
  const aim = hostAim(target);
  const tmp = fs.realpathSync(os.tmpdir());
  const ok =
    path.basename(c.dir).startsWith('treecast-canary-') &&
    (c.dir.startsWith(tmp + path.sep) || c.dir.startsWith(os.tmpdir() + path.sep)) &&
    (aim === c.dir || aim.startsWith(c.dir + '/'));
  if (!ok) throw new Error(`refusing to plant a link to ${target} (leads to ${aim}, outside the canary dir ${c.dir})`);
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** `treecast <args> --repo REPO` with its own cache dir, as a child process (async: builds can overlap). */
export function treecast(repo: string, cacheDir: string, args: string[], timeoutMs = 120_000): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const env: NodeJS.ProcessEnv = { ...process.env, TREECAST_CACHE_DIR: cacheDir };
    delete env.TREECAST_DEBUG;
    delete env.SOURCE_DATE_EPOCH;
    const child = spawn(process.execPath, [BIN, ...args, '--repo', repo], { cwd: repo, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      stderr += `\n[test harness: treecast ${args.join(' ')} timed out after ${timeoutMs} ms]\n`;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Runs `fn` over `items`, at most `limit` at a time, keeping the order of the results. */
export async function pool<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** Markers found in a buffer, as "where: marker". */
function markersIn(buf: Buffer, where: string): string[] {
  return CANARY_MARKERS.filter((m) => buf.includes(m)).map((m) => `${where}: ${JSON.stringify(m)}`);
}

/**
 * Every regular file below `dir`, read as bytes. Symlinks are listed with
 * lstat and never followed: an artifact that holds a link to the canary is
 * not a leak, and following it here would make the test read the canary itself.
 */
function scanTree(dir: string, label: string): string[] {
  const hits: string[] = [];
  const walk = (abs: string, rel: string) => {
    const st = fs.lstatSync(abs);
    if (st.isDirectory()) for (const n of fs.readdirSync(abs).sort()) walk(path.join(abs, n), `${rel}/${n}`);
    else if (st.isFile()) hits.push(...markersIn(fs.readFileSync(abs), `${label}${rel}`));
  };
  walk(dir, '');
  return hits;
}

/**
 * Canary bytes in everything under `dir` (an out dir or a publish dir): each
 * file's raw bytes, plus what is inside the compressed ones — squashfs
 * extracted with unsquashfs, tarballs decompressed (a tar stream holds file
 * contents verbatim). Returns the hits; [] means clean.
 */
export function canaryBytesIn(dir: string, scratch: string): string[] {
  const hits = scanTree(dir, dir);
  const walk = (abs: string) => {
    const st = fs.lstatSync(abs);
    if (st.isDirectory()) {
      for (const n of fs.readdirSync(abs).sort()) walk(path.join(abs, n));
      return;
    }
    if (!st.isFile()) return;
    if (abs.endsWith('.squashfs')) {
      const dest = fs.mkdtempSync(path.join(scratch, 'unsquash-'));
      fs.rmdirSync(dest);
      sh('unsquashfs', ['-no-xattrs', '-quiet', '-no-progress', '-d', dest, abs]);
      hits.push(...scanTree(dest, `${abs}!`));
      fs.rmSync(dest, { recursive: true, force: true });
    } else if (/\.(tgz|tar\.gz)$/.test(abs)) {
      hits.push(...markersIn(gunzipSync(fs.readFileSync(abs)), `${abs}!`));
    } else if (abs.endsWith('.tar.zst')) {
      const r = spawnSync('zstd', ['-dc', abs], { maxBuffer: 1024 * 1024 * 1024 });
      if (r.status !== 0) throw new Error(`zstd -dc ${abs} failed: ${r.stderr}`);
      hits.push(...markersIn(r.stdout, `${abs}!`));
    }
  };
  walk(dir);
  return hits;
}

/** Canary bytes in what the CLI printed (an error message that quotes a file it read through a link leaks too). */
export function canaryBytesInOutput(r: RunResult): string[] {
  return [...markersIn(Buffer.from(r.stdout), 'stdout'), ...markersIn(Buffer.from(r.stderr), 'stderr')];
}
