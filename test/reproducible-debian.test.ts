/**
 * Reproducibility of a real Debian image (issues "Compile" and "Artifacts"):
 * the example edge-host is built twice from clean caches, each running
 * mmdebstrap from scratch. Both builds must give the same OSTree commit
 * checksum and a byte-identical rootfs.tar.zst.
 *
 * Only the downloaded .debs are shared between the two builds: they live in
 * the per-user package cache (aptArchiveCache(): ~/.cache/treecast/apt-archives,
 * or $TREECAST_APT_CACHE), not in the cache dirs. They are the archive's
 * files, not build state, and downloading 150 MB twice would only test the
 * network.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, PROJECT_ROOT } from './helpers/cli.js';
import { requireTool, sh } from './helpers/build-fixture.js';

interface Built {
  commit: string;
  version: string;
  artifacts: { type: string; path: string; size: number; sha256: string }[];
}

let work: string;
let repo: string;

/** A build into a new, empty cache dir (the per-user package cache is shared: every build on the machine uses it). */
function buildClean(n: number): Built {
  const cache = path.join(work, `cache${n}`);
  mkdirSync(cache);
  const r = spawnSync(process.execPath, [BIN, 'build', 'edge-host', '--json', '--repo', repo], {
    env: { ...process.env, TREECAST_CACHE_DIR: cache },
    encoding: 'utf8',
    timeout: 1_800_000,
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.status !== 0) throw new Error(`build ${n} failed (${r.status}):\n${r.stderr.slice(-4000)}`);
  return JSON.parse(r.stdout).images[0] as Built;
}

let first: Built;
let second: Built;

beforeAll(() => {
  requireTool('mmdebstrap');
  work = mkdtempSync(path.join(os.tmpdir(), 'treecast-repro-'));
  repo = path.join(work, 'repo');
  for (const d of ['images', 'overlays', 'files']) cpSync(path.join(PROJECT_ROOT, d), path.join(repo, d), { recursive: true, verbatimSymlinks: true });
  // One git commit: its time is the SOURCE_DATE_EPOCH of both builds.
  const env = { ...process.env, GIT_AUTHOR_DATE: '2026-01-02T03:04:05Z', GIT_COMMITTER_DATE: '2026-01-02T03:04:05Z' };
  sh('git', ['init', '-q'], { cwd: repo, env });
  sh('git', ['add', '-A'], { cwd: repo, env });
  sh('git', ['-c', 'user.email=ci@example.com', '-c', 'user.name=ci', '-c', 'commit.gpgsign=false', 'commit', '-qm', 'v1'], { cwd: repo, env });
  first = buildClean(1);
  second = buildClean(2);
}, 3_600_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('a Debian image built twice from clean caches', () => {
  it('gives the same OSTree commit checksum', () => {
    expect(second.commit).toMatch(/^[0-9a-f]{64}$/);
    expect(second.commit).toBe(first.commit);
    expect(second.version).toBe(first.version);
  });

  it('gives a byte-identical rootfs.tar.zst (same size and sha256 of the files on disk)', () => {
    const tar = (b: Built) => b.artifacts.find((a) => a.type === 'tarball')!;
    expect(tar(first)).toBeDefined();
    const digest = (b: Built) => sh('sha256sum', [tar(b).path]).split(' ')[0];
    expect(tar(second).size).toBe(tar(first).size);
    expect(digest(second)).toBe(digest(first));
    expect(digest(first)).toBe(tar(first).sha256);
  });
});
