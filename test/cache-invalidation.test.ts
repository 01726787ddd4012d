/**
 * Issue #13: a cache that follows the inputs exactly. On real builds of small
 * tree-based images (a and b share an include and the base tree, c only the
 * base tree, d is derived from a):
 *  - changing one input (a file's byte, a file's mode, the shared include,
 *    the base tree, one manifest) rebuilds exactly the images that read it,
 *    and every other image is reported cached;
 *  - an image built in a warm cache (its base image cached there) and in an
 *    empty one gives the same commit checksum and byte-identical artifacts
 *    (test/reproducible-debian.test.ts does the same for two Debian builds,
 *    artifacts.test.ts for every output format).
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireTool, type BuiltImage, type Fixture } from './helpers/build-fixture.js';
import { gitopsRepo } from './helpers/gitops-fixture.js';

describe('the build cache follows the inputs: one changed input rebuilds exactly the images that read it', () => {
  let fx: Fixture;
  const build = (cacheDir?: string, names: string[] = []): BuiltImage[] => {
    const r = fx.cli(['build', ...names, '--json', '--no-remote-history'], { cacheDir });
    expect(r.code, r.stderr).toBe(0);
    return (JSON.parse(r.stdout) as { images: BuiltImage[] }).images;
  };
  /** Build every image after a change and return the names rebuilt (not cached), sorted. */
  const rebuiltAfter = (change: () => void, message: string): string[] => {
    change();
    fx.commit(message);
    return build()
      .filter((i) => !i.cached)
      .map((i) => i.name)
      .sort();
  };

  beforeAll(() => {
    for (const tool of ['git', 'ostree', 'mksquashfs', 'tar', 'zstd']) requireTool(tool);
    fx = gitopsRepo({ images: ['a', 'b', 'c', 'd'], prefix: 'invalidation' });
    expect(build().map((i) => [i.name, i.cached])).toEqual([
      ['a', false],
      ['b', false],
      ['c', false],
      ['d', false],
    ]);
  }, 120_000);

  afterAll(() => fx?.cleanup());

  it('nothing changed: every image cached', () => {
    expect(build().every((i) => i.cached)).toBe(true);
  });

  it("a byte of a's overlay file: a and d (derived from a)", () => {
    expect(rebuiltAfter(() => fs.appendFileSync(path.join(fx.dir, 'overlays/oa/etc/oa/config'), 'x'), 'one byte')).toEqual(['a', 'd']);
  });

  it("only the mode of b's overlay file: b", () => {
    expect(rebuiltAfter(() => fs.chmodSync(path.join(fx.dir, 'overlays/ob/etc/ob/config'), 0o600), 'mode only')).toEqual(['b']);
  });

  it('the include a and b share: a, b and d', () => {
    const shared = path.join(fx.dir, 'images/common/shared.yaml');
    expect(rebuiltAfter(() => fs.writeFileSync(shared, fs.readFileSync(shared, 'utf8').replace('kernel-args: [quiet]', 'kernel-args: [quiet, loglevel=3]')), 'include')).toEqual(['a', 'b', 'd']);
  });

  it('a file of the base tree every image starts from: all four', () => {
    expect(rebuiltAfter(() => fs.writeFileSync(path.join(fx.dir, 'trees/base/etc/hostname'), 'changed\n'), 'base tree')).toEqual(['a', 'b', 'c', 'd']);
  });

  it("d's own manifest: d alone", () => {
    expect(rebuiltAfter(() => fs.appendFileSync(path.join(fx.dir, 'images/d.yaml'), 'metadata: { note: "d only" }\n'), 'd manifest')).toEqual(['d']);
  });

  it('an image built with its base cached and in an empty cache: the same commit, byte-identical artifacts', () => {
    fx.write('images/e.yaml', 'name: e\nbase: { source: image, image: a }\nautomatic-version-prefix: "1"\nfiles:\n  - { path: /etc/e.conf, content: "e\\n" }\noutputs:\n  squashfs: { compression: zstd }\n  tarball: { compression: zstd }\n');
    fx.commit('e');
    // Two fresh caches at the same git state (so a gets the same version in both). Warm: a is
    // built first, on its own; e then starts from a's cached commit. Cold: a and e in one run.
    const warmCache = fx.newCacheDir();
    build(warmCache, ['a']);
    const warm = build(warmCache, ['e']);
    expect(warm.find((i) => i.name === 'a')).toMatchObject({ cached: true });
    const cold = build(fx.newCacheDir(), ['e']);
    expect(cold.find((i) => i.name === 'a')).toMatchObject({ cached: false });
    const we = warm.find((i) => i.name === 'e')!;
    const ce = cold.find((i) => i.name === 'e')!;
    expect(ce.commit).toBe(we.commit);
    const sums = (i: BuiltImage) => Object.fromEntries(i.artifacts.map((x) => [path.basename(x.path), x.sha256]));
    expect(Object.keys(sums(we)).sort()).toEqual(['rootfs.squashfs', 'rootfs.tar.zst']);
    expect(sums(ce)).toEqual(sums(we));
  });
});
