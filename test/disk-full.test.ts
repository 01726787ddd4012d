/**
 * A disk that fills up in the middle of a build: a clear error, exit 1, the
 * ref untouched, no temporary directories left. The cache lives on a small
 * tmpfs so the build really runs out of space. Then the same for a publish:
 * the publish dir on a small tmpfs that holds v1 but not v2; v1 stays
 * published, whole and consistent.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeRepo, revParse, tmpEntries, type Fixture } from './helpers/build-fixture.js';
import { STACK_TRACE } from './helpers/cli.js';

let fx: Fixture;
let mnt: string;
let pubMnt: string;

beforeAll(() => {
  mnt = mkdtempSync(path.join(os.tmpdir(), 'treecast-full-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=3m', 'treecast-full', mnt]);
  fx = makeRepo({
    files: {
      'images/big.yaml': 'name: big\nbase: { source: tree, path: tree }\nfiles:\n  - { path: /usr/share/big.bin, source: files/big.bin }\n',
      'tree/usr/lib/os-release': 'ID=big\n',
      // Incompressible, larger than the whole cache disk.
      'files/big.bin': Buffer.from(Array.from({ length: 4 * 1024 * 1024 }, (_, i) => (i * 2654435761) >>> 24)),
    },
  });
});

afterAll(() => {
  fx?.cleanup();
  for (const m of [mnt, pubMnt].filter(Boolean)) {
    try {
      execFileSync('umount', [m]);
    } finally {
      rmSync(m, { recursive: true, force: true });
    }
  }
});

describe('disk full', () => {
  it('fails with a clear message and exit 1, leaving no half-written commit or temp dirs', () => {
    const cache = path.join(mnt, 'cache');
    mkdirSync(cache);
    const r = fx.cli(['build'], { cacheDir: cache });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/no space left|No space left/i);
    expect(r.stderr).toContain('building big');
    expect(r.stderr).not.toMatch(STACK_TRACE);
    expect(revParse(path.join(cache, 'repo'), 'big/x86_64/stable')).toBeUndefined();
    expect(tmpEntries(cache)).toEqual([]);
  }, 120_000);
});

describe('publish dir full', () => {
  it('a publish that runs out of space: exit 1, a clear message, the previously published version whole and served as before', () => {
    pubMnt = mkdtempSync(path.join(os.tmpdir(), 'treecast-pubfull-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=3m', 'treecast-pubfull', pubMnt]);
    const pub = path.join(pubMnt, 'public');
    const env = { TREECAST_PUBLISH_DIR: pub };
    // v1: the small image, which fits.
    fx.write('images/small.yaml', 'name: small\nbase: { source: tree, path: tree }\nautomatic-version-prefix: "1"\n');
    fx.commit('v1');
    const b1 = fx.cli(['build', 'small'], { env });
    expect(b1.code, b1.stderr).toBe(0);
    const p1 = fx.cli(['publish', 'small', '--json'], { env });
    expect(p1.code, p1.stderr).toBe(0);
    const ref = path.join(pub, 'repo/refs/heads/small/x86_64/stable');
    const v1 = readFileSync(ref, 'utf8').trim();
    const index1 = readFileSync(path.join(pub, 'index.json'), 'utf8');
    const summary1 = readFileSync(path.join(pub, 'repo/summary'));
    // v2 adds 4 MiB of incompressible bytes: more than the whole publish disk.
    fx.write('images/small.yaml', 'name: small\nbase: { source: tree, path: tree }\nautomatic-version-prefix: "1"\nfiles:\n  - { path: /usr/share/big.bin, source: files/big.bin }\n');
    fx.commit('v2');
    const b2 = fx.cli(['build', 'small'], { env });
    expect(b2.code, b2.stderr).toBe(0);
    const p2 = fx.cli(['publish', 'small'], { env });
    expect(p2.code).toBe(1);
    expect(p2.stderr).toMatch(/publishing small: no space left on the disk of .*public; what was published before is unchanged/);
    expect(p2.stderr).not.toMatch(STACK_TRACE);
    // What hosts and people see is exactly v1.
    expect(readFileSync(ref, 'utf8').trim()).toBe(v1);
    expect(readFileSync(path.join(pub, 'index.json'), 'utf8')).toBe(index1);
    expect(readFileSync(path.join(pub, 'repo/summary')).equals(summary1)).toBe(true);
    expect(readdirSync(path.join(pub, 'images/small')).filter((d) => !d.startsWith('.')).sort()).toEqual(['1.1', 'latest']);
    expect(existsSync(path.join(pub, 'images/small/latest/MANIFEST.json'))).toBe(true);
    execFileSync('ostree', ['fsck', `--repo=${path.join(pub, 'repo')}`], { stdio: 'pipe' });
  }, 180_000);
});
