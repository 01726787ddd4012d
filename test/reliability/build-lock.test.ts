/**
 * Two treecast processes on one cache dir (watch and ci, two CI jobs sharing
 * a cache): the build lock serializes them, both succeed with distinct
 * versions, a waiter names the holder, --no-wait fails at once, and a
 * SIGKILLed holder never wedges the next build (the kernel drops the lock).
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeRepo, requireTool, shellTree, type Fixture, type BuiltImage, revParse } from '../helpers/build-fixture.js';

let fx: Fixture;
// Postprocess writes to an overlay over the root (steps/layer.ts): its new files are in the upper dir while it runs.
const MARK = path.join('layer-postprocess', 'upper', 'started-by-postprocess');

beforeAll(() => {
  for (const t of ['bwrap', 'ostree', 'flock']) requireTool(t);
  fx = makeRepo({
    prefix: 'build-lock',
    files: {
      ...shellTree('trees/base'),
      // The postprocess holds the build long enough for a second process to arrive.
      'images/slow.yaml': 'name: slow\nbase: { source: tree, path: trees/base }\nautomatic-version-prefix: "1"\npostprocess: ["touch /started-by-postprocess; sleep 4"]\n',
    },
  });
});
afterAll(() => fx?.cleanup());

/** Resolves once the first build's postprocess is running (it holds the lock by then). */
async function whenStarted(run: ReturnType<Fixture['spawnCli']>): Promise<void> {
  const tmp = path.join(fx.cacheDir, 'tmp');
  const deadline = Date.now() + 60_000;
  while (!(fs.existsSync(tmp) && fs.readdirSync(tmp).some((d) => fs.existsSync(path.join(tmp, d, MARK))))) {
    if (Date.now() > deadline) throw new Error(`the first build never reached postprocess:\n${run.output().stderr}`);
    if (run.child.exitCode !== null) throw new Error(`the first build ended early:\n${run.output().stderr}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('build lock per cache dir', () => {
  it('two builds at once: the second waits (naming the holder), both succeed, distinct versions on one chain', async () => {
    const first = fx.spawnCli(['build', 'slow', '--json']);
    await whenStarted(first);
    const second = fx.spawnCli(['build', 'slow', '--json', '--force']);
    const [a, b] = await Promise.all([first.done, second.done]);
    expect(a.code, a.stderr).toBe(0);
    expect(b.code, b.stderr).toBe(0);
    expect(b.stderr).toMatch(new RegExp(`waiting for the build lock of ${fx.cacheDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}, held by pid ${first.child.pid} `));
    const va = (JSON.parse(a.stdout) as { images: BuiltImage[] }).images[0]!;
    const vb = (JSON.parse(b.stdout) as { images: BuiltImage[] }).images[0]!;
    expect([va.version, vb.version]).toEqual(['1.1', '1.2']);
    expect(revParse(fx.ostreeRepo, `${vb.commit}^`)).toBe(va.commit);
    expect(revParse(fx.ostreeRepo, 'slow/x86_64/stable')).toBe(vb.commit);
  }, 180_000);

  it('--no-wait fails at once with exit 1 naming the holder', async () => {
    const first = fx.spawnCli(['build', 'slow', '--force']);
    await whenStarted(first);
    const t0 = Date.now();
    const r = fx.cli(['build', 'slow', '--force', '--no-wait']);
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`is held by pid ${first.child.pid} `);
    expect((await first.done).code).toBe(0);
  }, 180_000);

  it('a SIGKILLed holder: the next build takes the lock at once, removes the leftovers and completes', async () => {
    const first = fx.spawnCli(['build', 'slow', '--force']);
    await whenStarted(first);
    first.child.kill('SIGKILL');
    await first.done;
    // The killed build's image root is still there; a staging dir of a killed emit too.
    const tmp = path.join(fx.cacheDir, 'tmp');
    expect(fs.readdirSync(tmp).length).toBeGreaterThan(0);
    fs.mkdirSync(path.join(fx.cacheDir, 'out/slow/.staging-1.9-abc'), { recursive: true });
    const t0 = Date.now();
    const r = fx.cli(['build', 'slow', '--force', '--no-wait', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(Date.now() - t0).toBeLessThan(60_000);
    expect(r.stderr).toMatch(/removed \d+ leftovers of an interrupted build \(.*tmp\/slow-.*out\/slow\/\.staging-1\.9-abc/);
    expect(fs.readdirSync(tmp)).toEqual([]);
    expect(fs.readdirSync(path.join(fx.cacheDir, 'out/slow')).filter((n) => n.startsWith('.'))).toEqual([]);
  }, 180_000);
});
