/**
 * Issue "GitOps": `treecast watch` as a child process on a real temporary
 * repository (images a and b, tree-based): the initial build and publish,
 * a rebuild of only the image whose overlay changed, editor save patterns
 * (temp file renamed over the original, bursts of writes) debounced into one
 * rebuild, an invalid manifest that keeps the last good version published
 * and served, the fix that rebuilds, and a clean exit on SIGINT.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer } from '../compiler/serve/index.js';
import { STACK_TRACE } from './helpers/cli.js';
import { ostreeCat, requireTool, type CliResult, type Fixture } from './helpers/build-fixture.js';
import { gitopsRepo, lineOf, manifestA, publishedCommit, pullOverHttp, waitFor } from './helpers/gitops-fixture.js';

const REF_A = 'a/x86_64/stable';
const REF_B = 'b/x86_64/stable';
const OA_CONFIG = 'overlays/oa/etc/oa/config';

/** Longer than the watcher's debounce (300 ms) + write-settle time (150 ms) + a tiny build, with margin. */
const QUIET_MS = 3_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const count = (s: string, re: RegExp) => (s.match(new RegExp(re.source, 'gm')) ?? []).length;

describe('watch: rebuild and republish on every change', () => {
  let fx: Fixture;
  let pub: string;
  let run: ReturnType<Fixture['spawnCli']>;
  let exited: CliResult | undefined;
  const stderr = () => run.output().stderr;
  /** stderr written since `mark` (a length of stderr taken earlier). */
  const since = (mark: number) => stderr().slice(mark);
  const publishedA = (s: string) => count(s, /^published a /);
  const publishedB = (s: string) => count(s, /^published b /);
  const changes = (s: string) => count(s, /^changed: /);
  const pubA = () => publishedCommit(pub, REF_A);
  const pubB = () => publishedCommit(pub, REF_B);
  const catA = (file: string) => ostreeCat(path.join(pub, 'repo'), REF_A, file);
  /** Waits for the watcher to be idle: no new output for QUIET_MS. */
  const settle = async () => {
    let len = -1;
    while (len !== stderr().length) {
      len = stderr().length;
      await sleep(QUIET_MS);
    }
  };
  const ctx = () => `watcher stderr:\n${stderr()}`;

  beforeAll(async () => {
    for (const tool of ['git', 'ostree', 'bwrap']) requireTool(tool);
    fx = gitopsRepo({ images: ['a', 'b'], prefix: 'watch' });
    pub = path.join(fx.dir, 'public');
    run = fx.spawnCli(['watch']);
    void run.done.then((r) => (exited = r));
    await waitFor('"watching for changes" (initial build and publish done)', () => /watching for changes/.test(stderr()) || exited, 90_000, ctx);
    expect(exited, ctx()).toBeUndefined();
  }, 120_000);

  afterAll(async () => {
    if (run && !exited) {
      run.child.kill('SIGKILL');
      await run.done;
    }
    fx?.cleanup();
  });

  it('the initial build published both images before "watching"', () => {
    const s = stderr();
    const watchingAt = s.indexOf('watching for changes');
    expect(publishedA(s.slice(0, watchingAt)), ctx()).toBe(1);
    expect(publishedB(s.slice(0, watchingAt)), ctx()).toBe(1);
    expect(pubA()).toMatch(/^[0-9a-f]{64}$/);
    expect(pubB()).toMatch(/^[0-9a-f]{64}$/);
    expect(s).not.toMatch(STACK_TRACE);
  });

  it('an edit to an overlay file of a republishes a (new commit with the new content); b is untouched', async () => {
    const a0 = pubA();
    const b0 = pubB();
    const mark = stderr().length;
    fx.write(OA_CONFIG, 'oa v2 from the watcher test\n');
    await waitFor('a new published commit of a', () => pubA() !== a0, 30_000, ctx);
    await settle();
    const s = since(mark);
    expect(s).toContain(`changed: ${OA_CONFIG}`);
    expect(s).toContain(`a: ${OA_CONFIG} changed (overlay overlays/oa)`);
    expect(publishedA(s), ctx()).toBe(1);
    expect(publishedB(s), ctx()).toBe(0);
    expect(pubB()).toBe(b0);
    expect(catA('/usr/etc/oa/config')).toBe('oa v2 from the watcher test\n');
  });

  it('an editor save (temp file written, then renamed over the original) is one rebuild', async () => {
    const a0 = pubA();
    const mark = stderr().length;
    const file = path.join(fx.dir, OA_CONFIG);
    const tmp = path.join(fx.dir, 'overlays/oa/etc/oa/.config.swp');
    fs.writeFileSync(tmp, 'oa v3 saved atomically\n');
    fs.renameSync(tmp, file);
    await waitFor('a new published commit of a', () => pubA() !== a0, 30_000, ctx);
    await settle();
    const s = since(mark);
    expect(publishedA(s), ctx()).toBe(1);
    expect(changes(s), ctx()).toBe(1);
    expect(publishedB(s)).toBe(0);
    expect(catA('/usr/etc/oa/config')).toBe('oa v3 saved atomically\n');
  });

  it('many quick writes in a row are one (or very few) rebuilds, and the last write wins', async () => {
    const a0 = pubA();
    const mark = stderr().length;
    const file = path.join(fx.dir, OA_CONFIG);
    const WRITES = 25;
    for (let i = 0; i < WRITES; i++) {
      fs.writeFileSync(file, `oa burst ${i}\n`);
      await sleep(15);
    }
    await waitFor('a new published commit of a', () => pubA() !== a0, 30_000, ctx);
    await settle();
    const s = since(mark);
    const rebuilds = publishedA(s);
    expect(rebuilds, ctx()).toBeGreaterThanOrEqual(1);
    expect(rebuilds, `${WRITES} writes made ${rebuilds} rebuilds\n${ctx()}`).toBeLessThanOrEqual(2);
    expect(publishedB(s)).toBe(0);
    expect(catA('/usr/etc/oa/config')).toBe(`oa burst ${WRITES - 1}\n`);
  });

  it('an invalid manifest prints the located error and keeps the last good version published and served', async () => {
    const a0 = pubA();
    const b0 = pubB();
    const mark = stderr().length;
    const bad = manifestA() + 'bogus-key: 1\n';
    fx.write('images/a.yaml', bad);
    await waitFor('the watcher to report the invalid manifest', () => /last good version/.test(since(mark)), 30_000, ctx);
    await settle();
    const s = since(mark);
    expect(s).toContain(`images/a.yaml:${lineOf(bad, /^bogus-key:/)}:1: bogus-key: unknown key "bogus-key"`);
    expect(s).toMatch(/last good version stays published/);
    expect(s).not.toMatch(STACK_TRACE);
    expect(publishedA(s)).toBe(0);
    expect(exited).toBeUndefined();
    expect(pubA()).toBe(a0);
    expect(pubB()).toBe(b0);

    const server = await startServer({ dir: pub, host: '127.0.0.1', port: 0, log: () => {} });
    try {
      const pull = await pullOverHttp(`${server.url}/repo`, REF_A);
      fs.rmSync(pull.dir, { recursive: true, force: true });
      expect(pull.ok, pull.output).toBe(true);
      expect(pull.commit).toBe(a0);
    } finally {
      await server.close();
    }
  });

  it("an edit to b's overlay while a's manifest is invalid is not lost: fixing a rebuilds a and b", async () => {
    const a0 = pubA();
    const b0 = pubB();
    let mark = stderr().length;
    const outMark = run.output().stdout.length;
    fx.write('overlays/ob/etc/ob/config', 'ob v2 edited while a was invalid\n');
    await waitFor('the watcher to see the edit (and refuse: a is still invalid)', () => /last good version/.test(since(mark)), 30_000, ctx);
    await settle();
    expect(publishedB(since(mark))).toBe(0);
    expect(pubB()).toBe(b0);

    mark = stderr().length;
    // The fix also changes a key, so a's inputs differ from its last published build.
    fx.write('images/a.yaml', manifestA().replace('owner: team-a', 'owner: team-a-fixed'));
    await waitFor('a and b republished', () => pubA() !== a0 && pubB() !== b0, 30_000, ctx);
    await settle();
    const s = since(mark);
    expect(s).not.toMatch(/last good version/);
    expect(s).toContain('a: images/a.yaml changed (manifest)');
    expect(s).toContain('b: overlays/ob/etc/ob/config changed (overlay overlays/ob)');
    // The semantic diff against the last good manifest goes to stdout.
    expect(run.output().stdout.slice(outMark)).toContain('~ metadata.owner: "team-a" -> "team-a-fixed"');
    expect(publishedA(s), ctx()).toBe(1);
    expect(publishedB(s), ctx()).toBe(1);
    expect(catA('/usr/etc/oa/config')).toBe('oa burst 24\n');
    expect(ostreeCat(path.join(pub, 'repo'), REF_B, '/usr/etc/ob/config')).toBe('ob v2 edited while a was invalid\n');
  });

  it('SIGINT stops the watcher', async () => {
    expect(exited).toBeUndefined();
    run.child.kill('SIGINT');
    const r = await Promise.race([run.done, sleep(15_000).then(() => undefined)]);
    expect(r, `the watcher did not exit 15 s after SIGINT\n${ctx()}`).toBeDefined();
    expect(r!.signal, 'exited by itself, not killed by the signal').toBeNull();
    expect([0, 1]).toContain(r!.code);
    expect(r!.stderr).toContain('SIGINT received');
    expect(r!.stderr).not.toMatch(STACK_TRACE);
  });
});
