/**
 * Start-up cleanup (removeBuildLeftovers) removes what a killed build left in
 * the cache, and nothing a symlink in the cache points at.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { removeBuildLeftovers } from '../../compiler/compile/build.js';
import type { Repo } from '../../compiler/repo.js';

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'treecast-leftovers-'));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

describe('removeBuildLeftovers', () => {
  it('removes tmp/* and out/<name>/.staging-*, never through a symlinked tmp/ or out/<name>', () => {
    const cache = path.join(work, 'cache');
    const outside = path.join(work, 'outside');
    fs.mkdirSync(path.join(outside, 'tmp-target/edge-host-abc'), { recursive: true });
    fs.mkdirSync(path.join(outside, 'out-target/.staging-1.2-xyz'), { recursive: true });
    fs.mkdirSync(path.join(cache, 'out/real/.staging-1.0-aaa'), { recursive: true });
    fs.mkdirSync(path.join(cache, 'out/real/1.0'), { recursive: true });
    fs.symlinkSync(path.join(outside, 'out-target'), path.join(cache, 'out/linked'));
    fs.symlinkSync(path.join(outside, 'tmp-target'), path.join(cache, 'tmp'));

    const removed = removeBuildLeftovers({ cacheDir: cache } as Repo);
    expect(removed).toEqual([path.join(cache, 'out/real/.staging-1.0-aaa')]);
    expect(fs.existsSync(path.join(cache, 'out/real/1.0'))).toBe(true);
    expect(fs.existsSync(path.join(outside, 'tmp-target/edge-host-abc'))).toBe(true);
    expect(fs.existsSync(path.join(outside, 'out-target/.staging-1.2-xyz'))).toBe(true);

    // A real tmp/ is emptied.
    fs.unlinkSync(path.join(cache, 'tmp'));
    fs.mkdirSync(path.join(cache, 'tmp/edge-host-def/root'), { recursive: true });
    expect(removeBuildLeftovers({ cacheDir: cache } as Repo)).toEqual([path.join(cache, 'tmp/edge-host-def')]);
    expect(fs.readdirSync(path.join(cache, 'tmp'))).toEqual([]);
  });
});
