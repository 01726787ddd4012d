/**
 * Issue #11 "GitOps in CI for real": every CI build job starts with an empty
 * cache and no public/, so the published HTTP tree is the only history. These
 * tests publish from one cache, serve that tree with the real `treecast serve`
 * on 127.0.0.1, and build from fresh empty caches (and no publish dir) with the
 * real CLI and the real ostree client: unchanged inputs, N+1 on the published
 * parent, publishing that back with a working static delta, a derived image on
 * its base's published commit, an unreachable server, --no-remote-history.
 * Plus the pure planning function.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseLogHistory, planHistory, type HistoryInput } from '../compiler/compile/remote-history.js';
import { STACK_TRACE } from './helpers/cli.js';
import { settledAccessLines, startServe, stopServe, type ServeProcess as Server } from './helpers/serve.js';
import { makeRepo, ostreeCat, ostreeMeta, revParse, sh, shellTree, type BuiltImage as FixtureBuiltImage, type Fixture } from './helpers/build-fixture.js';

/** build --json images with the fields remote history adds. */
type BuiltImage = FixtureBuiltImage & {
  upToDate?: 'local' | 'published';
  parent?: string;
  published?: { url: string; commit: string; version: string };
  base?: { name: string; commit: string; from: 'built' | 'local' | 'published' };
};

const C = (n: number) => String(n).repeat(64).slice(0, 64);

describe('planHistory (pure)', () => {
  const base: HistoryInput = { inputHash: 'h-new', force: false, prefix: '1.0', localVersions: [], publicDirVersions: [] };

  it('nothing anywhere: version 1, no parent', () => {
    expect(planHistory(base)).toEqual({ action: 'build', version: '1.0.1' });
  });

  it('published tip with the same inputs on an empty cache: up to date with the published commit', () => {
    expect(planHistory({ ...base, published: { commit: C(1), version: '1.0.4', inputHash: 'h-new', versions: ['1.0.4', '1.0.3'] } })).toEqual({
      action: 'cached',
      from: 'published',
      commit: C(1),
      version: '1.0.4',
    });
  });

  it('published tip with other inputs: N+1 on the published parent; --force builds even when equal', () => {
    const published = { commit: C(1), version: '1.0.4', inputHash: 'h-old', versions: ['1.0.4', '1.0.3'] };
    expect(planHistory({ ...base, published })).toEqual({ action: 'build', version: '1.0.5', parent: C(1), parentFrom: 'published' });
    expect(planHistory({ ...base, force: true, published: { ...published, inputHash: 'h-new' } })).toMatchObject({ action: 'build', version: '1.0.5', parent: C(1) });
  });

  it('a local tip ahead of the published one (its history holds the published tip) is the parent, or the cache', () => {
    const published = { commit: C(1), version: '1.0.4', inputHash: 'h-old', versions: ['1.0.4'] };
    const local = { commit: C(2), version: '1.0.5', inputHash: 'h-mid', history: [C(2), C(1)] };
    expect(planHistory({ ...base, published, local, localVersions: ['1.0.5', '1.0.4'] })).toEqual({ action: 'build', version: '1.0.6', parent: C(2), parentFrom: 'local' });
    expect(planHistory({ ...base, published, local: { ...local, inputHash: 'h-new' } })).toMatchObject({ action: 'cached', from: 'local', commit: C(2), version: '1.0.5' });
  });

  it('a local tip behind or off the published history is left aside (with a note); versions never repeat', () => {
    const published = { commit: C(1), version: '1.0.4', inputHash: 'h-old', versions: ['1.0.4', '1.0.3'] };
    const stale = { commit: C(3), version: '1.0.7', inputHash: 'h-new', history: [C(3), C(4)] };
    const d = planHistory({ ...base, published, local: stale, localVersions: ['1.0.7'] });
    expect(d).toMatchObject({ action: 'build', version: '1.0.8', parent: C(1), parentFrom: 'published' });
    expect(d.note).toMatch(/1\.0\.7 .* not in the published history/);
  });

  it('no published tip: the local tip decides, as without remote history; the publish dir counts for versions', () => {
    const local = { commit: C(2), version: '1.0.2', inputHash: 'h-old', history: [C(2)] };
    expect(planHistory({ ...base, local, localVersions: ['1.0.2'], publicDirVersions: ['1.0.3'] })).toEqual({ action: 'build', version: '1.0.4', parent: C(2), parentFrom: 'local' });
  });

  it('parseLogHistory: commits and the last parent named, also when that parent was never fetched', () => {
    const log = `commit ${C(5)}\nParent:  ${C(6)}\nContentChecksum:  ${C(7)}\nVersion: 1.0.2\n\n    x\n\n<< History beyond this commit not fetched >>\n`;
    expect(parseLogHistory(log)).toEqual([C(5), C(6)]);
  });
});

const BASE_REF = 'rh/base/x86_64/stable';
const DERIVED_REF = 'rh/derived/x86_64/stable';

describe('remote history: fresh caches continue from the published tree (real CLI, ostree, treecast serve)', () => {
  let fx: Fixture;
  let server: Server;
  let pub: string;
  let v1: Record<string, BuiltImage>;
  let v2: Record<string, BuiltImage>;
  let v2Cache: string;
  let v2Published: { name: string; version: string; commit: string; previous?: string; delta?: string }[];
  /** Env for a CI-like job: no publish dir of its own (a path that does not exist). */
  let noPublicDir: NodeJS.ProcessEnv;

  const byName = (images: BuiltImage[]) => Object.fromEntries(images.map((i) => [i.name, i]));
  /** `build --json` from a cache, as a fresh CI job (no publish dir); must succeed. */
  const buildFresh = (cacheDir: string, args: string[] = []) => {
    const r = fx.cli(['build', '--json', ...args], { cacheDir, env: noPublicDir });
    expect(r.code, r.stderr).toBe(0);
    return { images: byName((JSON.parse(r.stdout) as { images: BuiltImage[] }).images), stderr: r.stderr };
  };
  const publishTo = (cacheDir: string, dir: string, images: string[] = []) => {
    const r = fx.cli(['publish', ...images, '--dir', dir, '--json'], { cacheDir });
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as { images: { name: string; version: string; commit: string; previous?: string; delta?: string }[] };
  };

  beforeAll(async () => {
    fx = makeRepo({ prefix: 'remote-history', files: {} });
    pub = path.join(path.dirname(fx.dir), 'published');
    fs.mkdirSync(pub);
    server = await startServe(pub, path.join(path.dirname(fx.dir), 'access.log'));
    noPublicDir = { TREECAST_PUBLISH_DIR: path.join(path.dirname(fx.dir), 'no-public-dir') };
    const files = {
      ...shellTree('rootfs'),
      'treecast.yaml': `publish: { url: ${server.url} }\n`,
      'overlays/motd/etc/motd': 'motd v1\n',
      'images/base.yaml': `name: base\nref: ${BASE_REF}\nautomatic-version-prefix: "1.0"\nbase: { source: tree, path: rootfs }\noverlays: [overlays/motd]\noutputs: { ostree: {} }\n`,
      'images/derived.yaml': `name: derived\nref: ${DERIVED_REF}\nautomatic-version-prefix: "1.0"\nbase: { source: image, image: base }\nfiles:\n  - { path: /etc/role, content: "derived v1\\n" }\noutputs: { ostree: {} }\n`,
    };
    for (const [rel, spec] of Object.entries(files)) fx.write(rel, spec);
    fx.commit('images published at the test server');
    // The "publisher": its own cache, publishing into the served tree. Nothing is published yet, so this is version 1.
    const first = fx.cli(['build', '--json'], { env: noPublicDir });
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toMatch(/nothing published at http:\/\/127\.0\.0\.1:\d+\/repo yet/);
    v1 = byName((JSON.parse(first.stdout) as { images: BuiltImage[] }).images);
    expect([v1.base!.version, v1.derived!.version]).toEqual(['1.0.1', '1.0.1']);
    publishTo(fx.cacheDir, pub);
  }, 180_000);

  afterAll(async () => {
    await stopServe(server);
    fx?.cleanup();
  });

  it('unchanged inputs on a fresh cache: cached, naming the published commit and version; nothing emitted, nothing in the build repo', () => {
    const cache = fx.newCacheDir();
    const t0 = performance.now();
    const { images, stderr } = buildFresh(cache);
    const seconds = (performance.now() - t0) / 1000;
    for (const name of ['base', 'derived']) {
      expect(images[name]).toMatchObject({ cached: true, upToDate: 'published', commit: v1[name]!.commit, version: '1.0.1', steps: [], artifacts: [] });
      expect(images[name]!.published).toEqual({ url: server.url, commit: v1[name]!.commit, version: '1.0.1' });
      expect(images[name]!.outDir).toBeUndefined();
    }
    expect(images.derived!.base).toEqual({ name: 'base', commit: v1.base!.commit, from: 'published' });
    expect(stderr).toContain(`base: up to date with the published tip 1.0.1 (${v1.base!.commit.slice(0, 12)}) at ${server.url}`);
    // Only commit objects were read: the build repo holds neither refs nor the published content.
    expect(revParse(path.join(cache, 'repo'), BASE_REF)).toBeUndefined();
    expect(fs.existsSync(path.join(cache, 'repo/objects', v1.base!.commit.slice(0, 2), `${v1.base!.commit.slice(2)}.commit`))).toBe(false);
    expect(fs.existsSync(path.join(cache, 'out'))).toBe(false);
    const read = /published history: 2 of 2 ref\(s\) published at \S+, read in ([\d.]+)s/.exec(stderr);
    expect(read, stderr).not.toBeNull();
    console.log(`up-to-date check of 2 images from a fresh cache: ${seconds.toFixed(2)} s in all (CLI start, hashing); the published history (remote refs + metadata-only pull + metadata) read in ${read![1]} s`);
  });

  it('a changed overlay on a fresh cache: version N+1 whose parent is the published commit (parent absent from the build repo)', () => {
    fx.write('overlays/motd/etc/motd', 'motd v2\n');
    fx.commit('motd v2');
    const cache = fx.newCacheDir();
    const { images, stderr } = buildFresh(cache);
    v2 = images;
    v2Cache = cache;
    expect(images.base).toMatchObject({ cached: false, version: '1.0.2', parent: v1.base!.commit });
    expect(stderr).toContain(`base: published tip 1.0.1 (${v1.base!.commit.slice(0, 12)}) at ${server.url}; continuing at 1.0.2`);
    // The derived image's base changed, so it is rebuilt too, on its own published parent.
    expect(images.derived).toMatchObject({ cached: false, version: '1.0.2', parent: v1.derived!.commit, base: { name: 'base', commit: images.base!.commit, from: 'built' } });
    const repo = path.join(cache, 'repo');
    expect(sh('ostree', ['rev-parse', `--repo=${repo}`, `${BASE_REF}^`]).trim()).toBe(v1.base!.commit);
    expect(ostreeMeta(repo, BASE_REF, 'version')).toBe("'1.0.2'");
    expect(ostreeCat(repo, BASE_REF, '/usr/etc/motd')).toBe('motd v2\n');
    // The build repo holds complete commits only: the published parent is not even a partial commit there.
    expect(sh('ostree', ['log', `--repo=${repo}`, BASE_REF])).toMatch(/History beyond this commit not fetched/);
  });

  it('publishing that from the fresh cache into the served tree: ref chain 1.0.1 -> 1.0.2, and a client holding 1.0.1 fetches a static delta', async () => {
    // A client that follows the published ref, at 1.0.1 (bare-user like a host: ostree never uses deltas to pull into archive repos).
    const client = path.join(path.dirname(fx.dir), 'client');
    sh('ostree', ['init', `--repo=${client}`, '--mode=bare-user']);
    sh('ostree', ['remote', 'add', `--repo=${client}`, '--no-gpg-verify', 'origin', `${server.url}/repo`]);
    sh('ostree', ['pull', `--repo=${client}`, 'origin', BASE_REF]);
    expect(revParse(client, `origin:${BASE_REF}`)).toBe(v1.base!.commit);

    const out = publishTo(v2Cache, pub);
    v2Published = out.images;
    const b = out.images.find((i) => i.name === 'base')!;
    expect(b).toMatchObject({ version: '1.0.2', commit: v2.base!.commit, previous: v1.base!.commit });
    expect(b.delta).toBe(`${v1.base!.commit.slice(0, 12)}-${v2.base!.commit.slice(0, 12)}`);
    const served = path.join(pub, 'repo');
    expect(sh('ostree', ['rev-parse', `--repo=${served}`, `${BASE_REF}^`]).trim()).toBe(v1.base!.commit);
    expect([...sh('ostree', ['log', `--repo=${served}`, BASE_REF]).matchAll(/^Version: (\S+)/gm)].map((m) => m[1])).toEqual(['1.0.2', '1.0.1']);
    expect(sh('ostree', ['fsck', `--repo=${served}`], {})).toMatch(/no errors found/);

    const before = (await settledAccessLines(server)).length;
    // --require-static-deltas: the pull fails rather than fall back to loose objects.
    const pull = sh('ostree', ['pull', `--repo=${client}`, '--require-static-deltas', 'origin', BASE_REF]);
    expect(revParse(client, `origin:${BASE_REF}`)).toBe(v2.base!.commit);
    const requests = (await settledAccessLines(server)).slice(before);
    expect(requests.some((l) => /"GET \/repo\/deltas\/\S+ 200 /.test(l)), requests.join('\n')).toBe(true);
    expect(requests.filter((l) => /\.filez" 200/.test(l)), 'no loose content objects: the delta carried the change').toEqual([]);
    expect(pull).toMatch(/delta/i);
  });

  it('a derived image whose base is unchanged starts from the base published commit: the base steps do not run', () => {
    fx.write('images/derived.yaml', fs.readFileSync(path.join(fx.dir, 'images/derived.yaml'), 'utf8').replace('derived v1', 'derived v2'));
    fx.commit('derived v2');
    const cache = fx.newCacheDir();
    const { images, stderr } = buildFresh(cache, ['derived']);
    expect(images.base).toMatchObject({ cached: true, upToDate: 'published', commit: v2.base!.commit, version: '1.0.2', steps: [] });
    expect(images.derived).toMatchObject({ cached: false, version: '1.0.3', parent: v2.derived!.commit, base: { name: 'base', commit: v2.base!.commit, from: 'published' } });
    const stepNames = images.derived!.steps.map((s) => s.name);
    expect(stepNames[0]).toBe('base (image)');
    expect(images.derived!.steps[0]!.detail).toBe(`base at ${v2.base!.commit.slice(0, 12)}`);
    expect(stderr).toMatch(new RegExp(`derived: pulled base base ${v2.base!.commit.slice(0, 12)} from ${server.url.replace(/[.]/g, '\\.')}`));
    expect(stderr).not.toMatch(/base: building/);
    const repo = path.join(cache, 'repo');
    expect(ostreeCat(repo, DERIVED_REF, '/usr/etc/motd')).toBe('motd v2\n');
    expect(ostreeCat(repo, DERIVED_REF, '/usr/etc/role')).toBe('derived v2\n');
    // The base came in as a complete commit, without a local ref.
    expect(revParse(repo, BASE_REF)).toBeUndefined();
    expect(ostreeCat(repo, v2.base!.commit, '/usr/etc/motd')).toBe('motd v2\n');

    // A CI publish job with an empty publish dir takes the commit whose parent is absent from the build repo.
    const fresh = path.join(path.dirname(fx.dir), 'fresh-public');
    const out = publishTo(cache, fresh, ['derived']);
    expect(out.images).toMatchObject([{ name: 'derived', version: '1.0.3', commit: images.derived!.commit }]);
    expect(sh('ostree', ['fsck', `--repo=${path.join(fresh, 'repo')}`])).toMatch(/no errors found/);
    // And into the served tree, where the parent is: a delta from 1.0.2.
    const served = publishTo(cache, pub, ['derived']);
    expect(served.images[0]).toMatchObject({ version: '1.0.3', previous: v2Published.find((i) => i.name === 'derived')!.commit });
    expect(served.images[0]!.delta).toBeTruthy();
  });

  it('ci on a fresh cache and an empty publish dir: everything is up to date with the published tree, nothing is published again', () => {
    const cache = fx.newCacheDir();
    const r = fx.cli(['ci', '--json'], { cacheDir: cache, env: { TREECAST_PUBLISH_DIR: path.join(path.dirname(fx.dir), 'ci-public') } });
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { built: BuiltImage[]; published: unknown[] };
    expect(out.built.map((b) => [b.name, b.cached, b.upToDate, b.version])).toEqual([
      ['base', true, 'published', '1.0.2'],
      ['derived', true, 'published', '1.0.3'],
    ]);
    expect(out.published).toEqual([]);
  });

  it('--no-remote-history builds version 1 from scratch without a single request to the server', async () => {
    const cache = fx.newCacheDir();
    const before = (await settledAccessLines(server)).length;
    const { images } = buildFresh(cache, ['--no-remote-history']);
    expect((await settledAccessLines(server)).length).toBe(before);
    expect([images.base!.version, images.derived!.version]).toEqual(['1.0.1', '1.0.1']);
    expect(images.base!.published).toBeUndefined();
    expect(spawnStatus('ostree', ['rev-parse', `--repo=${path.join(cache, 'repo')}`, `${BASE_REF}^`])).not.toBe(0);
    expect(fs.existsSync(path.join(cache, 'published-history'))).toBe(false);
  });

  it('without publish.url in treecast.yaml the network is never tried', async () => {
    const yaml = fs.readFileSync(path.join(fx.dir, 'treecast.yaml'), 'utf8');
    fx.write('treecast.yaml', '# no publish.url: the default http://127.0.0.1:8080 is never consulted\narch: x86_64\n');
    try {
      const cache = fx.newCacheDir();
      const before = (await settledAccessLines(server)).length;
      const { images } = buildFresh(cache);
      expect(images.base!.version).toBe('1.0.1');
      expect((await settledAccessLines(server)).length).toBe(before);
      expect(fs.existsSync(path.join(cache, 'published-history'))).toBe(false);
    } finally {
      fx.write('treecast.yaml', yaml);
    }
  });

  it('server stopped: a clear error naming the URL and --no-remote-history, exit 1, no stack', async () => {
    await stopServe(server);
    const cache = fx.newCacheDir();
    const r = fx.cli(['build'], { cacheDir: cache, env: noPublicDir });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`cannot read the published history at ${server.url}/repo`);
    expect(r.stderr).toContain('--no-remote-history');
    expect(r.stderr).not.toMatch(STACK_TRACE);
    expect(revParse(path.join(cache, 'repo'), BASE_REF)).toBeUndefined();
  });
});

const spawnStatus = (cmd: string, args: string[]) => spawnSync(cmd, args).status;

describe('remote history with signing configured: the published tree is GPG-verified with the configured key', () => {
  let fx: Fixture;
  let server: Server;
  let homedir: string;
  let other: string;

  const keygen = (dir: string) => {
    const r = fx.cli(['keygen', '--homedir', dir, '--json']);
    expect(r.code, r.stderr).toBe(0);
    return (JSON.parse(r.stdout) as { fingerprint: string }).fingerprint;
  };
  const signingYaml = (fpr: string, dir: string) => `publish: { url: ${server.url} }\nsigning: { gpg-key: "${fpr}", gpg-homedir: ${dir} }\n`;

  beforeAll(async () => {
    fx = makeRepo({
      prefix: 'remote-history-gpg',
      files: { ...shellTree('rootfs'), 'images/one.yaml': 'name: one\nautomatic-version-prefix: "3.0"\nbase: { source: tree, path: rootfs }\noutputs: { ostree: {} }\n' },
    });
    const pub = path.join(path.dirname(fx.dir), 'published');
    fs.mkdirSync(pub);
    server = await startServe(pub, path.join(path.dirname(fx.dir), 'access.log'));
    homedir = path.join(path.dirname(fx.dir), 'gnupg');
    other = path.join(path.dirname(fx.dir), 'gnupg-other');
    const fpr = keygen(homedir);
    fx.write('treecast.yaml', signingYaml(fpr, homedir));
    fx.commit('signed publishing');
    fx.build();
    const r = fx.cli(['publish', '--dir', pub, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { signed: boolean }).signed).toBe(true);
  }, 180_000);

  afterAll(async () => {
    await stopServe(server);
    for (const d of [homedir, other]) if (d && fs.existsSync(d)) spawnSync('gpgconf', ['--homedir', d, '--kill', 'all']);
    fx?.cleanup();
  });

  it('a fresh cache verifies the signed summary and commit with the configured key', () => {
    const r = fx.cli(['build', '--json'], { cacheDir: fx.newCacheDir() });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/published history: 1 of 1 ref\(s\) published at .* \(GPG-verified\)/);
    expect((JSON.parse(r.stdout) as { images: BuiltImage[] }).images[0]).toMatchObject({ cached: true, upToDate: 'published', version: '3.0.1' });
  });

  it('a tree signed by another key than the configured one is refused, naming the URL', () => {
    const yaml = fs.readFileSync(path.join(fx.dir, 'treecast.yaml'), 'utf8');
    try {
      fx.write('treecast.yaml', signingYaml(keygen(other), other));
      const r = fx.cli(['build'], { cacheDir: fx.newCacheDir() });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`cannot read the published history at ${server.url}/repo`);
      expect(r.stderr).toMatch(/GPG|signature|keyring/i);
      expect(r.stderr).not.toMatch(STACK_TRACE);
    } finally {
      fx.write('treecast.yaml', yaml);
    }
  });
});
