/**
 * Repositories for the GitOps tests (plan, ci, diff, publish --from, watch):
 * small tree-based images on top of build-fixture's makeRepo, plus async
 * process helpers (an in-process HTTP server cannot answer an `ostree pull`
 * that spawnSync blocks on) and readers for the publish tree.
 *
 * The image set:
 *  - a: base tree trees/base, include common/shared.yaml, overlay overlays/oa
 *  - b: base tree trees/base, include common/shared.yaml, overlay overlays/ob
 *  - c: base tree trees/base, no include, no overlay
 *  - (optional) d: base {source: image, image: a}
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { makeRepo, shellTree, type FileSpec, type Fixture } from './build-fixture.js';

export const SHARED_INCLUDE = 'images/common/shared.yaml';

export const manifestA = (extra = '') => `name: a
include: [common/shared.yaml]
base: { source: tree, path: trees/base }
automatic-version-prefix: "1"
overlays:
  - overlays/oa
files:
  - { path: /etc/a.conf, content: "a\\n" }
metadata: { owner: team-a }
outputs: { ostree: {} }
${extra}`;

export const manifestB = `name: b
include: [common/shared.yaml]
base: { source: tree, path: trees/base }
automatic-version-prefix: "1"
overlays: [overlays/ob]
outputs: { ostree: {} }
`;

export const manifestC = `name: c
base: { source: tree, path: trees/base }
automatic-version-prefix: "1"
outputs: { ostree: {} }
`;

export const manifestD = `name: d
base: { source: image, image: a }
automatic-version-prefix: "1"
files:
  - { path: /etc/d.conf, content: "derived from a\\n" }
outputs: { ostree: {} }
`;

export interface GitopsOptions {
  /** Image names to include (default a, b, c). */
  images?: ('a' | 'b' | 'c' | 'd')[];
  /** Extra files (repository-relative). */
  files?: Record<string, FileSpec>;
  prefix?: string;
}

/** 1-based line of the first line of `text` matching `re`. */
export function lineOf(text: string, re: RegExp): number {
  const i = text.split('\n').findIndex((l) => re.test(l));
  if (i < 0) throw new Error(`no line matches ${re}`);
  return i + 1;
}

export function gitopsRepo(opts: GitopsOptions = {}): Fixture {
  const images = opts.images ?? ['a', 'b', 'c'];
  const manifests: Record<string, string> = { a: manifestA(), b: manifestB, c: manifestC, d: manifestD };
  const files: Record<string, FileSpec> = {
    ...shellTree('trees/base', { kernel: false }),
    '.gitignore': 'public/\n.treecast/\n',
    'README.md': '# fixture image specs\n',
    [SHARED_INCLUDE]: 'metadata: { shared: "yes" }\nkernel-args: [quiet]\n',
    'overlays/oa/etc/oa/config': 'oa v1\n',
    'overlays/oa/etc/oa/other': 'other v1\n',
    'overlays/ob/etc/ob/config': 'ob v1\n',
    ...opts.files,
  };
  for (const n of images) files[`images/${n}.yaml`] = manifests[n]!;
  return makeRepo({ files, prefix: opts.prefix ?? 'gitops' });
}

export interface ProcResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a program asynchronously (the event loop keeps serving HTTP); never throws for a non-zero exit. */
export function execAsync(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<ProcResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/**
 * A fresh archive client repository that pulls `ref` from `url` (a published
 * `repo/` over HTTP) with GPG verification off; returns the pulled commit.
 */
export async function pullOverHttp(url: string, ref: string): Promise<{ ok: boolean; commit?: string; output: string; dir: string }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'treecast-client-'));
  const repo = path.join(dir, 'repo');
  const steps: string[][] = [
    ['init', `--repo=${repo}`, '--mode=archive'],
    ['remote', 'add', `--repo=${repo}`, '--no-gpg-verify', 'origin', url, ref],
    ['pull', `--repo=${repo}`, 'origin', ref],
  ];
  let output = '';
  for (const s of steps) {
    const r = await execAsync('ostree', s);
    output += r.stdout + r.stderr;
    if (r.code !== 0) return { ok: false, output, dir };
  }
  const rp = await execAsync('ostree', ['rev-parse', `--repo=${repo}`, `origin:${ref}`]);
  return { ok: rp.code === 0, commit: rp.stdout.trim() || undefined, output: output + rp.stderr, dir };
}

/** The commit a published ref points to (public/repo/refs/heads/<ref>), or undefined. */
export function publishedCommit(publishDir: string, ref: string): string | undefined {
  const f = path.join(publishDir, 'repo', 'refs', 'heads', ref);
  return fs.existsSync(f) ? fs.readFileSync(f, 'utf8').trim() : undefined;
}

export const ANSI = /\x1b\[/;

/** Polls `fn` until it returns a truthy value or `timeoutMs` passes (then throws with `what` and `detail()`). */
export async function waitFor<T>(what: string, fn: () => T | undefined | false | null, timeoutMs = 60_000, detail?: () => string): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${detail ? `\n${detail()}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
