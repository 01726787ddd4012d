/**
 * Issue "GitOps": `treecast watch` as a child process on a real temporary
 * repository (images a and b, tree-based): the initial build and publish,
 * a rebuild of only the image whose overlay changed, editor save patterns
 * (temp file renamed over the original, bursts of writes) debounced into one
 * rebuild, an invalid manifest that keeps the last good version published
 * and served, the fix that rebuilds, and a clean exit on SIGINT.
 *
 * Issue #12, a second watcher (`watch --serve`, its cache on a small tmpfs):
 * a round that fails on the environment (the build lock held by someone else
 * for too long, a full disk) is reported, the last good version stays served
 * and the next edit after the cause is gone publishes; treecast.yaml edits
 * reach the next round; an invalid treecast.yaml is reported at its line and
 * the previous configuration stays until it is fixed.
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer } from '../compiler/serve/index.js';
import { STACK_TRACE } from './helpers/cli.js';
import { ostreeCat, requireTool, type CliResult, type Fixture } from './helpers/build-fixture.js';
import { gitopsRepo, lineOf, manifestA, manifestC, publishedCommit, pullOverHttp, waitFor } from './helpers/gitops-fixture.js';

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
    await waitFor('a new published commit of a', () => pubA() !== a0 && /^published a /m.test(since(mark)), 30_000, ctx);
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
    await waitFor('a new published commit of a', () => pubA() !== a0 && /^published a /m.test(since(mark)), 30_000, ctx);
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
    await waitFor('a new published commit of a', () => pubA() !== a0 && /^published a /m.test(since(mark)), 30_000, ctx);
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
    await waitFor('a and b republished', () => pubA() !== a0 && pubB() !== b0 && /^published a /m.test(since(mark)) && /^published b /m.test(since(mark)), 30_000, ctx);
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

describe('watch survives failed rounds and reloads treecast.yaml (issue #12)', () => {
  let fx: Fixture;
  let pub: string;
  let mnt: string;
  let cache: string;
  let url: string;
  let run: ReturnType<Fixture['spawnCli']>;
  let exited: CliResult | undefined;
  const stderr = () => run.output().stderr;
  const since = (mark: number) => stderr().slice(mark);
  const ctx = () => `watcher stderr:\n${stderr()}`;
  const pubA = () => publishedCommit(pub, REF_A);
  const catA = (file: string) => ostreeCat(path.join(pub, 'repo'), REF_A, file);
  /** Version dirs of a in the publish tree (what retention keeps). */
  const versionDirsA = () => fs.readdirSync(path.join(pub, 'images/a')).filter((e) => e !== 'latest' && !e.startsWith('.'));
  /** What a client of the watch's own server sees: index.json's versions per image, and the HTTP status. */
  const served = async () => {
    const res = await fetch(`${url}/index.json`);
    const body = res.status === 200 ? ((await res.json()) as { images: { name: string; versions: { version: string; commit: string }[] }[] }) : undefined;
    const versions = (name: string) => body?.images.find((i) => i.name === name)?.versions.map((v) => v.version).sort() ?? [];
    return { status: res.status, versions };
  };
  const servedRef = async (ref: string) => (await fetch(`${url}/repo/refs/heads/${ref}`)).text().then((t) => t.trim());
  /** stderr of the round started by the last edit, once the watcher printed `re` in it. */
  const roundReport = (mark: number, re: RegExp, what: string) => waitFor(what, () => re.test(since(mark)) && since(mark), 30_000, ctx);

  beforeAll(async () => {
    for (const tool of ['git', 'ostree', 'bwrap', 'flock', 'mount']) requireTool(tool);
    // The cache dir lives on its own small tmpfs, so a test can fill it up for real.
    mnt = fs.mkdtempSync(path.join(os.tmpdir(), 'treecast-watch-full-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=48m', 'treecast-watch-full', mnt]);
    cache = path.join(mnt, 'cache');
    fx = gitopsRepo({ images: ['a', 'b'], prefix: 'watch-survive', files: { 'extra/c.yaml': manifestC } });
    pub = path.join(fx.dir, 'public');
    // spawnCli passes the test's environment on: a short lock wait keeps the lock test quick.
    process.env.TREECAST_WATCH_LOCK_TIMEOUT = '2';
    try {
      run = fx.spawnCli(['watch', '--serve', '--port', '0'], { cacheDir: cache });
    } finally {
      delete process.env.TREECAST_WATCH_LOCK_TIMEOUT;
    }
    void run.done.then((r) => (exited = r));
    await waitFor('"watching for changes"', () => /watching for changes/.test(stderr()) || exited, 90_000, ctx);
    expect(exited, ctx()).toBeUndefined();
    url = /^serving \S+ at (http:\/\/\S+?)\/$/m.exec(stderr())![1]!;
    expect(pubA(), ctx()).toMatch(/^[0-9a-f]{64}$/);
  }, 120_000);

  afterAll(async () => {
    if (run && !exited) {
      run.child.kill('SIGINT');
      const r = await Promise.race([run.done, sleep(15_000).then(() => undefined)]);
      if (!r) {
        run.child.kill('SIGKILL');
        await run.done;
      }
    }
    fx?.cleanup();
    if (mnt) {
      try {
        execFileSync('umount', [mnt]);
      } finally {
        fs.rmSync(mnt, { recursive: true, force: true });
      }
    }
  });

  it('the build lock held by someone else for too long fails the round; the next edit after it is released publishes', async () => {
    const a0 = pubA();
    // Another treecast (a ci run sharing the cache) holds the build lock, as flock(1) does for it.
    // It writes who it is into the lock file, as treecast's holders do, for the message the watcher prints.
    const lock = path.join(cache, 'build.lock');
    const holder = spawn('flock', ['--exclusive', '--no-fork', lock, 'sh', '-c', `echo "the watch test's holder" > '${lock}'; echo held; exec sleep 120`], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      let out = '';
      holder.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
      await waitFor('the test to hold the build lock', () => out.includes('held'), 10_000);
      const mark = stderr().length;
      fx.write(OA_CONFIG, 'oa while the lock is held\n');
      const s = await roundReport(mark, /the next change retries/, 'the round to give up on the build lock');
      expect(s).toMatch(/gave up waiting for the build lock of \S+ \(\S+\), held by the watch test's holder/);
      expect(s).toMatch(/the last good version stays published and served/);
      expect(s, 'an environment error is not reported as a bug').not.toMatch(STACK_TRACE);
      expect(exited, ctx()).toBeUndefined();
      expect(pubA()).toBe(a0);
    } finally {
      holder.kill('SIGKILL');
    }
    const mark = stderr().length;
    fx.write(OA_CONFIG, 'oa after the lock was released\n');
    await waitFor('a new published commit of a', () => pubA() !== a0 && /^published a /m.test(since(mark)), 30_000, ctx);
    expect(catA('/usr/etc/oa/config')).toBe('oa after the lock was released\n');
  });

  it('a full cache disk fails the round, the last good version stays served, and the next edit after space is freed publishes', async () => {
    const a0 = pubA();
    const before = await served();
    expect(before.status).toBe(200);
    expect(before.versions('a').length, ctx()).toBeGreaterThan(0);
    // Fill the tmpfs the cache lives on (dd stops with ENOSPC, which is the point).
    const filler = path.join(mnt, 'filler');
    spawnSyncIgnoringStatus('dd', ['if=/dev/zero', `of=${filler}`, 'bs=256k']);
    expect(fs.statfsSync(mnt).bavail, 'the cache disk is full').toBeLessThan(8);
    try {
      const mark = stderr().length;
      fx.write(OA_CONFIG, 'oa on a full disk\n');
      const s = await roundReport(mark, /the next change retries/, 'the round to fail on the full disk');
      expect(s).toMatch(/no space left/i);
      expect(s).toContain('the last good version stays published and served');
      expect(s).not.toMatch(STACK_TRACE);
      expect(exited, ctx()).toBeUndefined();
      // The server kept running and still serves the last good tree.
      const during = await served();
      expect(during.status).toBe(200);
      expect(during.versions('a')).toEqual(before.versions('a'));
      expect(await servedRef(REF_A)).toBe(a0);
    } finally {
      fs.rmSync(filler, { force: true });
    }
    const mark = stderr().length;
    fx.write(OA_CONFIG, 'oa after the disk was freed\n');
    await waitFor('a new published commit of a', () => pubA() !== a0 && /^published a /m.test(since(mark)), 30_000, ctx);
    expect(catA('/usr/etc/oa/config')).toBe('oa after the disk was freed\n');
    const after = await served();
    expect(after.versions('a').length).toBe(before.versions('a').length + 1);
    expect(await servedRef(REF_A)).toBe(pubA());
  });

  it('an edited treecast.yaml is what the next round uses (a second image glob, retention keep 1)', async () => {
    const mark = stderr().length;
    fx.write('treecast.yaml', 'images: ["images/*.yaml", "extra/*.yaml"]\nretention: { keep: 1 }\n');
    await waitFor('c published', () => publishedCommit(pub, 'c/x86_64/stable') && /^published c /m.test(since(mark)), 30_000, ctx);
    const s = since(mark);
    expect(s).toContain('treecast.yaml reloaded: configuration');
    // treecast.yaml is an input of every image: all are affected; a and b are up to date, c is new.
    expect(s).toContain('c: treecast.yaml changed (repository config)');
    expect((await served()).versions('c')).toHaveLength(1);
  });

  it('an invalid treecast.yaml is reported at its line; the previous configuration builds until it is fixed', async () => {
    let mark = stderr().length;
    const bad = 'images: ["images/*.yaml", "extra/*.yaml"]\nretention: { keep: "one" }\n';
    fx.write('treecast.yaml', bad);
    let s = await roundReport(mark, /keeping the previous configuration/, 'the watcher to report the invalid treecast.yaml');
    expect(s).toMatch(new RegExp(`^treecast\\.yaml:${lineOf(bad, /^retention:/)}:\\d+: retention\\.keep: `, 'm'));
    expect(s).toContain('watch: invalid treecast.yaml; keeping the previous configuration until it is fixed');
    expect(s).not.toMatch(STACK_TRACE);
    expect(exited, ctx()).toBeUndefined();

    // An edit while treecast.yaml is invalid builds with the previous configuration: retention keep 1.
    const a0 = pubA();
    mark = stderr().length;
    fx.write(OA_CONFIG, 'oa under the previous configuration\n');
    await waitFor('a republished', () => pubA() !== a0 && /^published a /m.test(since(mark)), 30_000, ctx);
    expect(since(mark), 'treecast.yaml is still invalid: reported again').toContain('keeping the previous configuration');
    expect(versionDirsA(), 'keep: 1 of the previous configuration').toHaveLength(1);

    // The fix: c leaves the image globs, retention is back to its default (5).
    mark = stderr().length;
    fx.write('treecast.yaml', 'images: ["images/*.yaml"]\n');
    s = await roundReport(mark, /treecast\.yaml reloaded/, 'the fixed treecast.yaml to be reloaded');
    await waitFor('the round to end', () => /no longer an image[\s\S]*(^published |^nothing new to publish)/m.test(since(mark)) && since(mark), 30_000, ctx);
    s = since(mark);
    expect(s).toContain('c: no longer an image of the repository');
    expect(s).not.toContain('keeping the previous configuration');
    const a1 = pubA();
    mark = stderr().length;
    fx.write(OA_CONFIG, 'oa under the fixed configuration\n');
    await waitFor('a republished', () => pubA() !== a1 && /^published a /m.test(since(mark)), 30_000, ctx);
    expect(versionDirsA(), 'default retention keeps the previous version').toHaveLength(2);
    expect(catA('/usr/etc/oa/config')).toBe('oa under the fixed configuration\n');
  });

  it('a new publish dir in treecast.yaml: the next round publishes there and --serve moves to it on the same URL', async () => {
    const mark = stderr().length;
    const pub2 = path.join(fx.dir, 'public2');
    fx.write('treecast.yaml', 'images: ["images/*.yaml"]\npublish: { dir: public2 }\n');
    await waitFor('the server to move to public2', () => /publish dir changed: now serving/.test(since(mark)), 30_000, ctx);
    const s = since(mark);
    expect(s).toContain(`publish dir ${pub} -> ${pub2}`);
    expect(s).toContain(`the server keeps serving ${pub} until the first publish to ${pub2} succeeds`);
    expect(s).toContain(`publish dir changed: now serving ${pub2} at ${url}/ (was ${pub})`);
    // The same URL now serves the new tree, which holds a's current commit.
    expect(publishedCommit(pub2, REF_A)).toBe(pubA());
    expect(await servedRef(REF_A)).toBe(pubA());
    expect((await served()).versions('a')).toHaveLength(1);
  });
});

/** Runs a program to its end whatever its exit status (dd filling a disk ends with ENOSPC). */
function spawnSyncIgnoringStatus(cmd: string, args: string[]): void {
  try {
    execFileSync(cmd, args, { stdio: 'ignore' });
  } catch {
    /* expected: the disk is full */
  }
}
