/**
 * A disk that fills up in the middle of a build: a clear error, exit 1, the
 * ref untouched, no temporary directories left. The cache lives on a small
 * tmpfs so the build really runs out of space.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeRepo, revParse, tmpEntries, type Fixture } from './helpers/build-fixture.js';
import { STACK_TRACE } from './helpers/cli.js';

let fx: Fixture;
let mnt: string;

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
  try {
    execFileSync('umount', [mnt]);
  } finally {
    rmSync(mnt, { recursive: true, force: true });
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
