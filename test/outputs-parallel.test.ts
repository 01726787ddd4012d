/**
 * Issue #12/#13: the outputs of an image run in parallel from one checkout.
 * When one fails, the others are cancelled and awaited before the checkout is
 * removed (a sibling never reads a tree deleted under it), the first error is
 * the one reported, with its output's name, and no staging file is left.
 *
 * Real ostree checkout, real mksquashfs (made to fail by an option it does not
 * know, added through a test double of the runner) and a real slow process in
 * place of tar (through a test double of the pipe runner): on SIGTERM it waits
 * a second and records whether the checkout still exists when it exits.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { emitImage, outRoot } from '../compiler/compile/emit.js';
import type { ImageBuildResult } from '../compiler/compile/build.js';
import { setPipeRunner, setRunner, type PipeRunner, type Runner } from '../compiler/exec.js';
import type { ImageManifest } from '../compiler/manifest/types.js';
import { FIXTURE_EPOCH, makeRepo, requireTool, sh, shellTree, tmpEntries, type BuiltImage, type Fixture } from './helpers/build-fixture.js';

const IMAGE = `name: par
base: { source: tree, path: trees/base }
automatic-version-prefix: "1"
outputs:
  ostree: {}
`;

/** The same image, asking emit for a squashfs and a tarball (the build itself only made the commit). */
const withOutputs = (outputs: ImageManifest['outputs']): ImageManifest => ({ name: 'par', base: { source: 'tree', path: 'trees/base' }, outputs: { ostree: {}, ...outputs } }) as ImageManifest;

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('outputs of one image in parallel', () => {
  let fx: Fixture;
  let built: ImageBuildResult;
  const restore: (() => void)[] = [];

  beforeAll(() => {
    for (const tool of ['ostree', 'mksquashfs', 'unsquashfs', 'tar', 'zstd', 'git', 'bwrap']) requireTool(tool);
    fx = makeRepo({ prefix: 'outputs-parallel', files: { ...shellTree('trees/base'), 'images/par.yaml': IMAGE } });
    const [img] = fx.build() as (BuiltImage & ImageBuildResult)[];
    built = img!;
  });
  afterEach(() => {
    while (restore.length) restore.pop()!();
  });
  afterAll(() => fx?.cleanup());

  it('squashfs and tarball (zstd 3 by default) are written from one checkout; nothing is left in <cache>/tmp', async () => {
    // Another version: the build's own (ostree only) output dir would be reused for its commit.
    const r = await emitImage(fx.repo(), withOutputs({ squashfs: {}, tarball: {} }), { ...built, version: '1.50' }, FIXTURE_EPOCH, new AbortController().signal);
    expect(r.artifacts.map((a) => a.file)).toEqual(['rootfs.squashfs', 'rootfs.tar.zst']);
    expect(fs.readdirSync(r.dir).sort()).toEqual(['MANIFEST.json', 'SHA256SUMS', 'rootfs.squashfs', 'rootfs.tar.zst']);
    expect(sh('unsquashfs', ['-s', path.join(r.dir, 'rootfs.squashfs')])).toMatch(/Compression zstd[\s\S]*compression-level 3/);
    expect(sh('tar', ['-tf', path.join(r.dir, 'rootfs.tar.zst'), '--zstd'])).toMatch(/^\.\/usr\/bin\/busybox$/m);
    expect(tmpEntries(fx.cacheDir)).toEqual([]);
  });

  it('when squashfs fails fast, the running tarball is killed and awaited before the checkout is removed; the squashfs error is reported; no staging left', async () => {
    const dir = fs.mkdtempSync(path.join(path.dirname(fx.dir), 'witness-'));
    const pidFile = path.join(dir, 'pid');
    const marker = path.join(dir, 'marker');
    let tree = '';

    const realRun = setRunner(undefined);
    const failingMksquashfs: Runner = async (cmd, args, opts) => {
      if (cmd !== 'mksquashfs') return realRun(cmd, args, opts);
      // Wait until the slow sibling runs, then fail the way a bad option does.
      for (let i = 0; i < 200 && !fs.existsSync(pidFile); i++) await new Promise((r) => setTimeout(r, 25));
      return realRun(cmd, [...args, '-no-such-option'], opts);
    };
    setRunner(failingMksquashfs);
    restore.push(() => setRunner(undefined));

    const realPipe = setPipeRunner(undefined);
    const slowTar: PipeRunner = (first, second, opts) => {
      tree = first[1].find((a) => a.startsWith('--directory='))!.slice('--directory='.length);
      // On SIGTERM: wait a second, then record whether the checkout is still there as it exits.
      const script = `trap 'kill $! 2>/dev/null; sleep 1; if test -d "$1"; then echo present > "$3"; else echo gone > "$3"; fi; exit 143' TERM; echo $$ > "$2"; sleep 60 & wait`;
      return realPipe(['sh', ['-c', script, 'slow-tar', tree, pidFile, marker]], second, opts);
    };
    setPipeRunner(slowTar);
    restore.push(() => setPipeRunner(undefined));

    const t0 = performance.now();
    const err = await emitImage(fx.repo(), withOutputs({ squashfs: {}, tarball: {} }), { ...built, version: '1.99' }, FIXTURE_EPOCH, new AbortController().signal).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    const seconds = (performance.now() - t0) / 1000;

    expect(err, 'emit fails').toBeInstanceOf(Error);
    expect(err!.message).toMatch(/^writing output squashfs of image par: command failed with exit code 1: mksquashfs /);
    const pid = Number(fs.readFileSync(pidFile, 'utf8'));
    expect(alive(pid), `slow tar stand-in (pid ${pid}) is gone`).toBe(false);
    expect(fs.readFileSync(marker, 'utf8').trim(), 'the checkout still existed when the sibling exited').toBe('present');
    expect(fs.existsSync(tree), 'the checkout is removed afterwards').toBe(false);
    expect(seconds, 'the sibling was cancelled, not waited out').toBeLessThan(30);
    expect(fs.readdirSync(outRoot(fx.repo(), 'par')).filter((n) => n.startsWith('.'))).toEqual([]);
    expect(fs.existsSync(path.join(outRoot(fx.repo(), 'par'), '1.99'))).toBe(false);
    expect(tmpEntries(fx.cacheDir)).toEqual([]);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
