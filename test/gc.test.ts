/**
 * Issue #12: `treecast gc`. A tree-based image built three times (three local
 * commits, three out/ versions), a second image built once and then removed
 * from the repository, a base cache ref no manifest produces (a real ostree
 * commit with its own objects), leftovers of a killed build and of a killed
 * repository conversion, and the per-cache .deb downloads of an older
 * treecast. Then: --dry-run changes nothing (hash of the whole cache tree) and
 * reports sizes; gc removes exactly what the dry run listed and frees what it
 * predicted; the newest version is still up to date for `treecast build`;
 * `ostree fsck` is clean; a second gc frees 0 bytes. The pure plan is
 * checked on plain objects.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildImages, buildLockPath } from '../compiler/compile/build.js';
import { formatReport, gcCommand } from '../compiler/commands/gc.js';
import { UsageError, UserError } from '../compiler/diagnostics.js';
import { loadImages } from '../compiler/images.js';
import { withLock } from '../compiler/lock.js';
import { planGc, type GcFacts } from '../compiler/gc/plan.js';
import { runGc, type GcReport } from '../compiler/gc/run.js';
import { makeRepo, requireTool, revParse, sh, shellTree, type Fixture } from './helpers/build-fixture.js';

const TINY_REF = 'acme/tiny/x86_64/stable';
const GONE_REF = 'acme/gone/x86_64/stable';
const STALE_CACHE_REF = `treecast/cache/base/${'d'.repeat(32)}`;

const tiny = (motd: string) =>
  `name: tiny\nref: ${TINY_REF}\nautomatic-version-prefix: "1.0"\nbase: { source: tree, path: trees/base }\n` +
  `files:\n  - { path: /etc/motd, content: "${motd}\\n" }\noutputs: { tarball: { compression: none } }\n`;
const gone = `name: gone\nref: ${GONE_REF}\nautomatic-version-prefix: "1.0"\nbase: { source: tree, path: trees/base }\nfiles:\n  - { path: /etc/gone, content: "only in gone\\n" }\noutputs: { tarball: { compression: none } }\n`;

/** Every entry of a tree: path, type, mode, size, content hash or link target, mtime. Any write shows. */
function treeHash(root: string): string {
  const h = createHash('sha256');
  const walk = (rel: string) => {
    const p = path.join(root, rel);
    const st = fs.lstatSync(p);
    h.update(`${rel}\0${st.mode}\0${st.size}\0${st.mtimeMs}\0${st.nlink}\0`);
    if (st.isSymbolicLink()) h.update(fs.readlinkSync(p));
    else if (st.isFile()) h.update(fs.readFileSync(p));
    else if (st.isDirectory()) for (const e of fs.readdirSync(p).sort()) walk(path.join(rel, e));
  };
  walk('.');
  return h.digest('hex');
}

const refsOf = (repo: string) => sh('ostree', ['refs', `--repo=${repo}`]).split('\n').filter(Boolean).sort();
const commitsOf = (repo: string, ref: string) => [...sh('ostree', ['log', `--repo=${repo}`, ref]).matchAll(/^commit ([0-9a-f]{64})$/gm)].map((m) => m[1]!);
const versionDirs = (dir: string) => (fs.existsSync(dir) ? fs.readdirSync(dir).filter((e) => !e.startsWith('.')).sort() : []);

describe('treecast gc', () => {
  let fx: Fixture;
  let tinyCommits: string[] = [];
  let tinyVersions: string[] = [];
  let dry: GcReport;
  let real: GcReport;
  let before: string;

  beforeAll(async () => {
    requireTool('ostree');
    fx = makeRepo({
      prefix: 'gc',
      files: {
        ...shellTree('trees/base', { kernel: false }),
        'treecast.yaml': 'retention: { keep: 2 }\n',
        'images/tiny.yaml': tiny('v1'),
        'images/gone.yaml': gone,
      },
    });
    // In-process builds (the CLI's own path: buildImages under the build lock): no CLI start-up per build.
    const build = async (names: string[]) => {
      const repo = fx.repo();
      const { all, selected } = loadImages(repo, names);
      return buildImages(repo, all, selected, { remoteHistory: false });
    };
    expect((await build([])).map((b) => [b.name, b.cached])).toEqual([['gone', false], ['tiny', false]]);
    for (const v of ['v2', 'v3']) {
      fx.write('images/tiny.yaml', tiny(v));
      if (v === 'v3') fx.remove('images/gone.yaml');
      fx.commit(`tiny ${v}`);
      expect((await build(['tiny']))[0]!.cached).toBe(false);
    }
    tinyCommits = commitsOf(fx.ostreeRepo, TINY_REF);
    tinyVersions = versionDirs(path.join(fx.cacheDir, 'out/tiny'));
    expect(tinyCommits).toHaveLength(3);
    expect(tinyVersions).toEqual(['1.0.1', '1.0.2', '1.0.3']);

    // A base cache no manifest produces: a real commit whose file is in no image.
    const stale = path.join(fx.cacheDir, 'stale-tree');
    fs.mkdirSync(stale);
    fs.writeFileSync(path.join(stale, 'blob'), Buffer.alloc(256 * 1024, 7));
    sh('ostree', ['commit', `--repo=${fx.ostreeRepo}`, `--branch=${STALE_CACHE_REF}`, `--tree=dir=${stale}`, '--no-xattrs', '--subject=stale base cache']);
    fs.rmSync(stale, { recursive: true });
    // What a killed build leaves, a killed repository conversion's side directory, and the per-cache apt downloads of an older treecast.
    fs.mkdirSync(path.join(fx.cacheDir, 'tmp/tiny-killed/root'), { recursive: true });
    fs.writeFileSync(path.join(fx.cacheDir, 'tmp/tiny-killed/root/half'), Buffer.alloc(64 * 1024, 1));
    // A checkout hardlinks repository objects: the stale blob's bytes come free with the prune, counted once, under repo.
    const blob = /([0-9a-f]{64}) \/blob$/m.exec(sh('ostree', ['ls', `--repo=${fx.ostreeRepo}`, '-C', STALE_CACHE_REF, '/blob']))![1]!;
    fs.linkSync(path.join(fx.ostreeRepo, 'objects', blob.slice(0, 2), `${blob.slice(2)}.file`), path.join(fx.cacheDir, 'tmp/tiny-killed/root/blob'));
    fs.mkdirSync(path.join(fx.cacheDir, 'out/tiny/.staging-1.0.5-abc'));
    fs.writeFileSync(path.join(fx.cacheDir, 'out/tiny/.staging-1.0.5-abc/rootfs.tar'), Buffer.alloc(32 * 1024, 2));
    const apt = path.join(fx.cacheDir, 'apt-archives');
    fs.mkdirSync(apt);
    for (const [f, n] of [['libfoo1_1.2-1_amd64.deb', 40], ['libfoo1_1.10-1_amd64.deb', 41], ['bar_2%3a0.9_all.deb', 43]] as const) {
      fs.writeFileSync(path.join(apt, f), Buffer.alloc(16 * 1024, n));
    }
    fs.mkdirSync(path.join(fx.cacheDir, 'repo.migrating/objects'), { recursive: true });
    fs.writeFileSync(path.join(fx.cacheDir, 'repo.migrating/config'), '[core]\nrepo_version=1\nmode=bare\n');

    before = treeHash(fx.cacheDir);
    const r = fx.cli(['gc', '--dry-run', '--json']);
    expect(r.code, r.stderr).toBe(0);
    dry = JSON.parse(r.stdout) as GcReport;
  }, 120_000);

  afterAll(() => fx?.cleanup());

  it('--dry-run touches nothing and lists every kind of garbage, by name, with the bytes it would free', () => {
    expect(treeHash(fx.cacheDir)).toBe(before);
    expect(dry.dryRun).toBe(true);
    expect(dry.keep).toBe(2);
    const what = (kind: string) => dry.items.filter((i) => i.kind === kind).map((i) => i.what).sort();
    expect(what('leftover')).toEqual(['out/tiny/.staging-1.0.5-abc', 'repo.migrating', 'tmp/tiny-killed']);
    expect(what('out-version')).toEqual(['out/tiny/1.0.1']);
    expect(what('out-image')).toEqual(['out/gone']);
    expect(what('cache-ref')).toEqual([STALE_CACHE_REF]);
    expect(what('image-ref')).toEqual([GONE_REF]);
    expect(dry.items.find((i) => i.kind === 'image-ref')!.reason).toMatch(/^image "gone", last built 1\.0\.1 [0-9a-f]{12}: no image of the repository builds this ref$/);
    // The oldest of tiny's three commits (newest first in ostree log).
    expect(what('commit')).toEqual([tinyCommits[2]]);
    expect(what('apt-cache')).toEqual(['apt-archives']);
    for (const c of ['leftovers', 'out', 'repo', 'apt-archives'] as const) expect(dry.categories[c].bytes, c).toBeGreaterThan(0);
    // The stale cache's 256 KiB blob and three 16 KiB .debs at least.
    expect(dry.categories.repo.bytes).toBeGreaterThanOrEqual(256 * 1024);
    expect(dry.categories.leftovers.bytes).toBeLessThan(256 * 1024);
    expect(dry.categories['apt-archives'].bytes).toBeGreaterThanOrEqual(3 * 16 * 1024);
    expect(dry.totalBytes).toBe(Object.values(dry.categories).reduce((n, c) => n + c.bytes, 0));
    expect(dry.objects.after).toBeLessThan(dry.objects.before);

    // What the CLI prints without --json, from the same report.
    const text = formatReport(dry);
    expect(text).toContain(`would remove from ${fx.cacheDir}`);
    expect(text).toContain(`image-ref    ${GONE_REF}`);
    expect(text).toMatch(new RegExp(`^  total\\s+${dry.items.length} item\\(s\\)`, 'm'));
    expect(text).toContain(`(${dry.totalBytes} bytes)`);
  });

  it('refuses to run while a build holds the cache with --no-wait, and removes nothing', async () => {
    const repo = fx.repo();
    await withLock(buildLockPath(repo), 'build lock (test)', async () => {
      const err = await runGc(repo, loadImages(repo).all, { keep: 2, dryRun: false, wait: false }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UserError);
      expect((err as Error).message).toMatch(/build lock of .* is held by/);
    });
    expect(fs.existsSync(path.join(fx.cacheDir, 'out/gone'))).toBe(true);
    expect(refsOf(fx.ostreeRepo)).toContain(GONE_REF);
  });

  it('gc removes exactly what the dry run listed, frees what it predicted, and keeps the newest builds usable', () => {
    const r = fx.cli(['gc', '--json']);
    expect(r.code, r.stderr).toBe(0);
    real = JSON.parse(r.stdout) as GcReport;
    expect(real.dryRun).toBe(false);
    expect(real.items).toEqual(dry.items);
    expect(real.categories).toEqual(dry.categories);
    expect(real.totalBytes).toBe(dry.totalBytes);
    expect(real.objects).toEqual(dry.objects);

    expect(refsOf(fx.ostreeRepo)).toEqual([TINY_REF]);
    expect(commitsOf(fx.ostreeRepo, TINY_REF)).toEqual(tinyCommits.slice(0, 2));
    expect(versionDirs(path.join(fx.cacheDir, 'out/tiny'))).toEqual(['1.0.2', '1.0.3']);
    expect(fs.readdirSync(path.join(fx.cacheDir, 'out/tiny')).filter((e) => e.startsWith('.'))).toEqual([]);
    expect(fs.existsSync(path.join(fx.cacheDir, 'out/gone'))).toBe(false);
    expect(fs.readdirSync(path.join(fx.cacheDir, 'tmp'))).toEqual([]);
    expect(fs.existsSync(path.join(fx.cacheDir, 'apt-archives'))).toBe(false);
    expect(fs.existsSync(path.join(fx.cacheDir, 'repo.migrating'))).toBe(false);
    expect(fs.existsSync(buildLockPath(fx.repo()))).toBe(true);
    for (const c of tinyCommits.slice(2)) expect(fs.existsSync(path.join(fx.ostreeRepo, 'objects', c.slice(0, 2), `${c.slice(2)}.commit`))).toBe(false);

    const fsck = sh('ostree', ['fsck', `--repo=${fx.ostreeRepo}`]);
    expect(fsck).toMatch(/no errors found/);
    // The kept versions' commits can still be checked out in full.
    for (const c of tinyCommits.slice(0, 2)) expect(sh('ostree', ['cat', `--repo=${fx.ostreeRepo}`, c, '/usr/etc/motd'])).toMatch(/^v[23]\n$/);

    const again = fx.cli(['build']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/^tiny\t1\.0\.3\t[0-9a-f]{64}\tcached$/m);
    expect(again.stderr).toMatch(/tiny: up to date \(1\.0\.3/);
    expect(revParse(fx.ostreeRepo, TINY_REF)).toBe(tinyCommits[0]);
  });

  it('a second gc finds nothing and frees 0 bytes', async () => {
    const repo = fx.repo();
    const second = await runGc(repo, loadImages(repo).all, { keep: 2, dryRun: false });
    expect(second.items).toEqual([]);
    expect(second.totalBytes).toBe(0);
    expect(second.objects.after).toBe(second.objects.before);
    const text = formatReport(second);
    expect(text).toMatch(/nothing to remove/);
    expect(text).toMatch(/total\s+0 item\(s\)\s+0 B\s+\(0 bytes\)/);
  });

  it('--keep overrides retention.keep; a bad --keep is a usage error quoting it', async () => {
    const repo = fx.repo();
    const dry1 = await runGc(repo, loadImages(repo).all, { keep: 1, dryRun: true });
    expect(dry1.items.map((i) => i.what).sort()).toEqual(['out/tiny/1.0.2', tinyCommits[1]!].sort());
    const bad = await gcCommand.run({ values: { keep: '0' }, positionals: [], json: false, repo: fx.dir }).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(UsageError);
    expect((bad as Error).message).toContain('--keep "0"');
  });

  it('follows no symlink out of the cache: a linked out/<name> makes gc refuse, the target untouched', async () => {
    const cache = fx.newCacheDir();
    const outside = path.join(path.dirname(cache), 'outside');
    fs.mkdirSync(path.join(outside, '.staging-victim'), { recursive: true });
    fs.writeFileSync(path.join(outside, '.staging-victim/keep'), 'not the cache\n');
    fs.mkdirSync(path.join(cache, 'out'), { recursive: true });
    fs.symlinkSync(outside, path.join(cache, 'out/tiny'));
    const repo = fx.repo(cache);
    const err = await runGc(repo, loadImages(repo).all, { keep: 2, dryRun: false }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toContain('"out/tiny" is a symlink');
    expect(fs.readFileSync(path.join(outside, '.staging-victim/keep'), 'utf8')).toBe('not the cache\n');
  });

  it('never removes the publish dir, even when TREECAST_PUBLISH_DIR points into the cache', async () => {
    const cache = fx.newCacheDir();
    fs.mkdirSync(path.join(cache, 'tmp/public/repo'), { recursive: true });
    fs.writeFileSync(path.join(cache, 'tmp/public/index.json'), '{}\n');
    const repo = { ...fx.repo(cache), publishDir: path.join(cache, 'tmp/public') };
    const err = await runGc(repo, loadImages(repo).all, { keep: 2, dryRun: false }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toMatch(/refuses to remove "tmp\/public": the publish dir .* is there/);
    expect(fs.readFileSync(path.join(cache, 'tmp/public/index.json'), 'utf8')).toBe('{}\n');
  });
});

describe('gc plan (pure)', () => {
  const c = (n: number) => String(n).repeat(64).slice(0, 64);
  const facts = (over: Partial<GcFacts> = {}): GcFacts => ({
    keep: 2,
    images: [{ name: 'a', ref: 'a/ref', baseCacheRef: 'treecast/cache/base/k1' }],
    refs: [
      { ref: 'a/ref', commits: [1, 2, 3, 4, 5].map((n) => ({ commit: c(n), version: `2.0.${6 - n}` })) },
      { ref: 'treecast/cache/base/k1', commits: [{ commit: c(6) }, { commit: c(7) }] },
    ],
    remoteRefs: [],
    commitObjects: [1, 2, 3, 4, 5, 6, 7].map(c),
    out: [{ name: 'a', versions: ['1.0.5', '1.0.4', '1.0.10', '1.0.9'].map((version) => ({ version })) }],
    publishedTips: {},
    legacyAptCache: false,
    leftovers: [],
    ...over,
  });

  it('keeps the newest versions in numeric order, and the commits a kept out/ version or the published tip needs', () => {
    const p = planGc(facts());
    expect([...p.outDirs].sort()).toEqual(['out/a/1.0.4', 'out/a/1.0.5']);
    expect(p.prune).toEqual([{ depth: 0, refs: ['treecast/cache/base/k1'] }, { depth: 1, refs: ['a/ref'] }]);
    expect(p.items.filter((i) => i.kind === 'commit').map((i) => i.what)).toEqual([c(3), c(4), c(5), c(7)]);
    // The published tip is the 4th commit: the ref keeps 4 commits.
    const pub = planGc(facts({ publishedTips: { 'a/ref': c(4) } }));
    expect(pub.prune.find((g) => g.refs.includes('a/ref'))!.depth).toBe(3);
    expect(pub.keptCommits).toEqual(expect.arrayContaining([c(1), c(2), c(3), c(4)]));
    // The version the ref points at is always kept, and a kept out/ version holds its commit.
    const tipOld = planGc(facts({ out: [{ name: 'a', versions: [{ version: '1.0.5', commit: c(1) }, { version: '1.0.9', commit: c(5) }, { version: '1.0.10' }] }] }));
    expect(tipOld.outDirs).toEqual([]);
    expect(tipOld.prune.find((g) => g.refs.includes('a/ref'))!.depth).toBe(4);
  });

  it('a commit another ref keeps is not listed; commits on no ref are; remote refs keep their history', () => {
    const p = planGc(
      facts({
        refs: [{ ref: 'a/ref', commits: [{ commit: c(1) }, { commit: c(2) }, { commit: c(3) }] }, { ref: 'b/ref', commits: [{ commit: c(3) }] }],
        images: [{ name: 'a', ref: 'a/ref' }, { name: 'b', ref: 'b/ref' }],
        remoteRefs: [{ ref: 'r:x', commits: [{ commit: c(8) }] }],
        commitObjects: [1, 2, 3, 8, 9].map(c),
        out: [],
      }),
    );
    expect(p.items.map((i) => [i.kind, i.what])).toEqual([['commit', c(9)]]);
    expect(p.keptCommits).toEqual([c(1), c(2), c(3), c(8)]);
  });
});
