/**
 * Issue #11, "Streams and promotion as git changes".
 *
 *  - pure: stream refs, merging treecast.yaml defaults, the rules across
 *    images, the plan wording of a pin change, which images a promotion
 *    leaves alone, where publish points each stream ref (and the error for a
 *    pin to an unpublished version), the kickstart and catalog entries;
 *  - real: a git fixture (tree-based image) through the real CLI: builds 1.1
 *    and 1.2, then commits that only move the `stable` pin. `plan` says
 *    promote/roll back and builds nothing, `ci` moves the ref to the commit
 *    already published for that version (same checksum, no build), with a
 *    static delta from the stream's previous commit, a real `ostree pull`
 *    gets it over HTTP, kickstart and index list every stream, retention keeps
 *    a pinned version, and a pin to an unpublished version fails clearly.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { diffStreams } from '../compiler/gitops/manifest-diff.js';
import { onlyManifestChanged, type ImageInputs } from '../compiler/gitops/graph.js';
import { sameBesidesStreams } from '../compiler/gitops/plan.js';
import { checkStreams, compareVersions, defaultStreamRef, mergeStreams, resolveStreams, type ResolvedStream } from '../compiler/manifest/streams.js';
import { buildCatalog, renderIndexHtml } from '../compiler/publish/catalog.js';
import { parseOstreesetup, renderKickstart } from '../compiler/publish/kickstart.js';
import { planStreamTargets } from '../compiler/publish/streams.js';
import { startServer, type RunningServer } from '../compiler/serve/index.js';
import { STACK_TRACE } from './helpers/cli.js';
import { requireTool, sh, type BuiltImage, type Fixture } from './helpers/build-fixture.js';
import { execAsync, gitopsRepo, lineOf, manifestA, publishedCommit } from './helpers/gitops-fixture.js';

const stream = (name: string, ref: string, version?: string): ResolvedStream => ({ name, ref, version, from: 'manifest' });

/**
 * A real client pulling a stream ref over HTTP, with ostree's default checks
 * (ref bindings verified): build commits carry no ref binding, so the commit
 * published for a version is accepted under every stream ref that points at it.
 */
async function pullStream(url: string, ref: string): Promise<{ ok: boolean; commit?: string; output: string; dir: string }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'treecast-stream-client-'));
  const repo = path.join(dir, 'repo');
  let output = '';
  for (const args of [
    ['init', `--repo=${repo}`, '--mode=archive'],
    ['remote', 'add', `--repo=${repo}`, '--no-gpg-verify', 'origin', url, ref],
    ['pull', `--repo=${repo}`, 'origin', ref],
  ]) {
    const r = await execAsync('ostree', args);
    output += r.stdout + r.stderr;
    if (r.code !== 0) return { ok: false, output, dir };
  }
  const rp = await execAsync('ostree', ['rev-parse', `--repo=${repo}`, `origin:${ref}`]);
  return { ok: rp.code === 0, commit: rp.stdout.trim() || undefined, output, dir };
}

describe('stream refs and declarations (pure)', () => {
  it('a stream ref replaces the last part of the image ref; a one-part ref gets the stream appended', () => {
    expect(defaultStreamRef('edge-host/x86_64/stable', 'testing')).toBe('edge-host/x86_64/testing');
    expect(defaultStreamRef('acme/edge-host/x86_64/devel', 'stable')).toBe('acme/edge-host/x86_64/stable');
    expect(defaultStreamRef('edge', 'stable')).toBe('edge/stable');
  });

  it('treecast.yaml defaults sit under the manifest: the manifest wins per stream name, and keeps its ref override', () => {
    const { specs, fromDefaults } = mergeStreams({ testing: {}, stable: {} }, { stable: { version: '2026.11.3' }, lts: { ref: 'acme/lts' } });
    expect(specs).toEqual({ testing: {}, stable: { version: '2026.11.3' }, lts: { ref: 'acme/lts' } });
    expect([...fromDefaults]).toEqual(['testing']);
    expect(resolveStreams('edge/x86_64/devel', specs, fromDefaults)).toEqual([
      { name: 'lts', ref: 'acme/lts', version: undefined, from: 'manifest' },
      { name: 'stable', ref: 'edge/x86_64/stable', version: '2026.11.3', from: 'manifest' },
      { name: 'testing', ref: 'edge/x86_64/testing', version: undefined, from: 'treecast.yaml' },
    ]);
  });

  it('rules across images: a pin on the image own ref, a ref used twice, a kickstart file name used twice; a follow stream on its own ref is fine', () => {
    const problems = checkStreams([
      { name: 'edge', ref: 'edge/x86_64/stable', streams: [stream('stable', 'edge/x86_64/stable', '1.1'), stream('host-testing', 'edge/x86_64/host-testing')] },
      { name: 'edge-host', ref: 'edge-host/x86_64/devel', streams: [stream('devel', 'edge-host/x86_64/devel'), stream('testing', 'edge/x86_64/stable')] },
    ]);
    expect(problems.map((p) => [p.image, p.stream, p.message])).toEqual([
      ['edge', 'stable', "stream \"stable\" of edge pins version 1.1 on the image's own ref edge/x86_64/stable, where every build is published"],
      ['edge-host', 'testing', 'ref "edge/x86_64/stable" of stream "testing" of edge-host is also the ref of image edge'],
      ['edge-host', 'testing', 'stream "testing" of edge-host would publish kickstart/edge-host-testing.ks, which is also the file of stream "host-testing" of edge'],
    ]);
    expect(problems[0]!.hint).toContain('ref: edge/x86_64/testing');
  });

  it('versions compare by their numbers: 1.10 is above 1.9', () => {
    expect(compareVersions('1.10', '1.9')).toBeGreaterThan(0);
    expect(compareVersions('2026.11.3', '2026.11.4')).toBeLessThan(0);
  });
});

describe('plan wording and detection (pure)', () => {
  const S = 'edge-host/x86_64/stable';
  it('raising a pin promotes, lowering it rolls back, in the words of the issue', () => {
    expect(diffStreams('edge-host', [stream('stable', S, '2026.11.2')], [stream('stable', S, '2026.11.3')])).toEqual([
      { image: 'edge-host', stream: 'stable', ref: S, action: 'promote', from: '2026.11.2', to: '2026.11.3', text: 'promote edge-host 2026.11.3 to stable' },
    ]);
    expect(diffStreams('edge-host', [stream('stable', S, '2026.11.4')], [stream('stable', S, '2026.11.3')])).toEqual([
      { image: 'edge-host', stream: 'stable', ref: S, action: 'rollback', from: '2026.11.4', to: '2026.11.3', text: 'roll back stable of edge-host from 2026.11.4 to 2026.11.3' },
    ]);
    expect(diffStreams('edge-host', [stream('stable', S, '1.9')], [stream('stable', S, '1.10')])[0]!.action).toBe('promote');
  });

  it('a new pinned stream is a promotion; adding, removing, pinning, unpinning and moving a stream each say so; nothing changed is nothing', () => {
    const T = 'edge-host/x86_64/testing';
    expect(diffStreams('e', [], [stream('stable', S, '1.1')]).map((c) => [c.action, c.text])).toEqual([['promote', 'promote e 1.1 to stable']]);
    expect(diffStreams('e', [], [stream('testing', T)]).map((c) => c.action)).toEqual(['add']);
    expect(diffStreams('e', [stream('testing', T)], []).map((c) => [c.action, c.text])).toEqual([['remove', `remove stream testing of e (its ref ${T} stays where it was published)`]]);
    expect(diffStreams('e', [stream('stable', S)], [stream('stable', S, '1.1')]).map((c) => [c.action, c.to])).toEqual([['pin', '1.1']]);
    expect(diffStreams('e', [stream('stable', S, '1.1')], [stream('stable', S)]).map((c) => [c.action, c.from])).toEqual([['follow', '1.1']]);
    expect(diffStreams('e', [stream('stable', S, '1.1')], [stream('stable', 'acme/stable', '1.1')]).map((c) => [c.action, c.from, c.to])).toEqual([['retarget', S, 'acme/stable']]);
    expect(diffStreams('e', [stream('stable', S, '1.1'), stream('testing', T)], [stream('testing', T), stream('stable', S, '1.1')])).toEqual([]);
  });

  it('an image whose only changed inputs are its manifest or includes can be a promotion; an overlay, a source file or treecast.yaml (beyond streams) cannot', () => {
    const g: ImageInputs = {
      name: 'a',
      files: [
        { path: 'images/a.yaml', role: 'manifest' },
        { path: 'images/common/shared.yaml', role: 'include' },
        { path: 'files/x', role: 'source file' },
        { path: 'treecast.yaml', role: 'repository config' },
      ],
      trees: [{ path: 'overlays/oa', role: 'overlay' }],
    };
    expect(onlyManifestChanged(g, ['images/a.yaml', 'images/common/shared.yaml', 'README.md'], false)).toBe(true);
    expect(onlyManifestChanged(g, ['images/a.yaml', 'overlays/oa/etc/x'], false)).toBe(false);
    expect(onlyManifestChanged(g, ['images/a.yaml', 'files/x'], false)).toBe(false);
    expect(onlyManifestChanged(g, ['images/a.yaml', 'treecast.yaml'], false)).toBe(false);
    expect(onlyManifestChanged(g, ['images/a.yaml', 'treecast.yaml'], true)).toBe(true);
    expect(sameBesidesStreams({ retention: { keep: 3 }, streams: { testing: {} } }, { retention: { keep: 3 } })).toBe(true);
    expect(sameBesidesStreams({ retention: { keep: 3 } }, { retention: { keep: 4 } })).toBe(false);
  });
});

describe('where publish points each stream (pure)', () => {
  const versions = new Map([
    ['1.1', 'a'.repeat(64)],
    ['1.2', 'b'.repeat(64)],
  ]);
  const base = { image: 'a', imageRef: 'a/x86_64/devel', versions, current: new Map<string, string | undefined>([['a/x86_64/stable', 'b'.repeat(64)]]) };

  it('a pin points at the commit published for its version, a follow stream at the new tip; the previous commit is kept for the delta', () => {
    const r = planStreamTargets({ ...base, streams: [stream('stable', 'a/x86_64/stable', '1.1'), stream('testing', 'a/x86_64/testing'), stream('devel', 'a/x86_64/devel')], tip: { version: '1.2', commit: 'b'.repeat(64) } });
    expect(r.errors).toEqual([]);
    expect(r.targets).toEqual([
      { image: 'a', stream: 'stable', ref: 'a/x86_64/stable', version: '1.1', commit: 'a'.repeat(64), follows: false, previous: 'b'.repeat(64), ownRef: false },
      { image: 'a', stream: 'testing', ref: 'a/x86_64/testing', version: '1.2', commit: 'b'.repeat(64), follows: true, previous: undefined, ownRef: false },
      { image: 'a', stream: 'devel', ref: 'a/x86_64/devel', version: '1.2', commit: 'b'.repeat(64), follows: true, previous: undefined, ownRef: true },
    ]);
  });

  it('a pin to a version that is not published is an error naming the stream, the version and the versions that are', () => {
    const r = planStreamTargets({ ...base, streams: [stream('stable', 'a/x86_64/stable', '1.9')], tip: undefined });
    expect(r.targets).toEqual([]);
    expect(r.errors).toEqual(['stream "stable" of a pins version 1.9, which is not published (published versions of a: 1.1, 1.2)']);
    expect(planStreamTargets({ ...base, versions: new Map(), streams: [stream('stable', 'a/x86_64/stable', '1.1')] }).errors).toEqual(['stream "stable" of a pins version 1.1, which is not published (a has no published version yet)']);
  });

  it('a follow stream of an image with nothing published has no target yet', () => {
    expect(planStreamTargets({ ...base, versions: new Map(), streams: [stream('testing', 'a/x86_64/testing')] })).toEqual({ targets: [], errors: [] });
  });

  it('the stream kickstart installs the stream ref; the catalog lists each stream with its kickstart and iPXE URLs and marks its version', () => {
    const ks = renderKickstart({ name: 'edge', stream: 'stable', ref: 'edge/x86_64/stable', version: '1.1', repoUrl: 'http://h/repo', remote: 'treecast', signed: false, kernelArgs: ['quiet'] });
    expect(parseOstreesetup(ks)).toEqual({ osname: 'edge', remote: 'treecast', url: 'http://h/repo', ref: 'edge/x86_64/stable', nogpg: true });
    expect(ks.split('\n')[0]).toBe('# treecast kickstart: installs edge, stream stable (edge/x86_64/stable, published version 1.1)');
    const mj = (version: string, commit: string, buildTime: string) => ({ name: 'edge', version, ref: 'edge/x86_64/devel', commit, inputHash: '', gitCommit: '', manifestSha256: '', buildTime, kernelArgs: [], artifacts: [], packages: [], privateFiles: [] });
    const c = buildCatalog({
      url: 'http://h',
      remote: 'treecast',
      signed: false,
      updated: 'now',
      images: [
        {
          name: 'edge',
          hasIpxe: false,
          versions: [mj('1.1', 'a'.repeat(64), '2024-01-01T00:00:00Z'), mj('1.2', 'b'.repeat(64), '2024-01-02T00:00:00Z')],
          streams: [{ name: 'stable', ref: 'edge/x86_64/stable', version: '1.1', commit: 'a'.repeat(64), follows: false, hasIpxe: true }],
        },
      ],
    });
    expect(c.images[0]!.streams).toEqual([
      { name: 'stable', ref: 'edge/x86_64/stable', version: '1.1', commit: 'a'.repeat(64), follows: false, kickstart: 'http://h/kickstart/edge-stable.ks', ipxe: 'http://h/boot/edge-stable.ipxe' },
    ]);
    const html = renderIndexHtml(c);
    expect(html).toMatch(/<tr data-stream="stable">[\s\S]*?edge\/x86_64\/stable[\s\S]*?1\.1[\s\S]*?pinned/);
    expect(html).toMatch(/<tr data-version="1\.1">\s*<td class="version">1\.1 <span class="badge stream">stable<\/span>/);
  });
});

interface PlanJson {
  affected: { name: string }[];
  changes: Record<string, unknown>;
  streams: { image: string; stream: string; action: string; ref: string; from?: string; to?: string; text: string }[];
}
interface CiJson {
  built: BuiltImage[];
  published: { name: string; version: string; commit: string }[];
  streams: { image: string; stream: string; ref: string; version: string; commit: string; previous?: string; moved: boolean; delta?: string; follows: boolean }[];
}

describe('promotion as a git change: real builds, ci, ostree pull', () => {
  let fx: Fixture;
  let pub: string;
  let repoDir: string;
  let server: RunningServer | undefined;
  const clients: string[] = [];
  const commitOf: Record<string, string> = {};
  const REFS = { devel: 'a/x86_64/devel', testing: 'a/x86_64/testing', stable: 'a/x86_64/stable' };
  // The image's own ref is a/x86_64/devel (every build); testing follows it on its own ref; stable is pinned.
  const manifest = (stable?: string) => manifestA(`ref: ${REFS.devel}\nstreams:\n  testing: {}\n${stable ? `  stable: { version: "${stable}" }\n` : ''}`);

  const plan = (): PlanJson => {
    const r = fx.cli(['plan', '--json']);
    expect(r.stderr).not.toMatch(STACK_TRACE);
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as PlanJson;
  };
  const ci = (): CiJson & { stderr: string } => {
    const r = fx.cli(['ci', '--json', '--since', 'HEAD~1']);
    expect(r.stderr).not.toMatch(STACK_TRACE);
    expect(r.code, r.stderr).toBe(0);
    return { ...(JSON.parse(r.stdout) as CiJson), stderr: r.stderr };
  };
  const deltas = () => sh('ostree', ['static-delta', 'list', `--repo=${repoDir}`]).split('\n').filter((l) => /^[0-9a-f]{64}-[0-9a-f]{64}$/.test(l));
  const indexJson = () => JSON.parse(fs.readFileSync(path.join(pub, 'index.json'), 'utf8')) as { images: { name: string; versions: { version: string }[]; streams: { name: string; ref: string; version: string; commit: string; follows: boolean; kickstart: string }[] }[] };

  beforeAll(async () => {
    for (const tool of ['git', 'ostree', 'tar']) requireTool(tool);
    fx = gitopsRepo({ images: ['a'], prefix: 'streams' });
    pub = path.join(fx.dir, 'public');
    repoDir = path.join(pub, 'repo');
    fs.mkdirSync(pub); // served from the start: the first ci fills it
    server = await startServer({ dir: pub, host: '127.0.0.1', port: 0, log: () => {} });
  });
  afterAll(async () => {
    await server?.close();
    for (const c of clients) fs.rmSync(c, { recursive: true, force: true });
    fx?.cleanup();
  });

  it('commit 1 builds and publishes 1.1: testing follows it on its own ref', () => {
    fx.write('images/a.yaml', manifest());
    fx.commit('a: own ref devel, stream testing');
    const r = ci();
    expect(r.published.map((p) => [p.name, p.version])).toEqual([['a', '1.1']]);
    commitOf['1.1'] = r.published[0]!.commit;
    expect(r.streams.map((s) => [s.stream, s.version, s.commit, s.moved])).toEqual([['testing', '1.1', commitOf['1.1'], true]]);
    expect(publishedCommit(pub, REFS.devel)).toBe(commitOf['1.1']);
    expect(publishedCommit(pub, REFS.testing)).toBe(commitOf['1.1']);
  });

  it('commit 2 builds and publishes 1.2: testing follows (the delta 1.1 -> 1.2 is made once)', () => {
    fx.write('overlays/oa/etc/oa/config', 'oa v2\n');
    fx.commit('edit oa');
    const r = ci();
    expect(r.published.map((p) => [p.name, p.version])).toEqual([['a', '1.2']]);
    commitOf['1.2'] = r.published[0]!.commit;
    expect(r.streams.map((s) => [s.stream, s.version, s.commit, s.previous, s.moved])).toEqual([['testing', '1.2', commitOf['1.2'], commitOf['1.1'], true]]);
    expect(publishedCommit(pub, REFS.testing)).toBe(commitOf['1.2']);
    expect(deltas()).toEqual([`${commitOf['1.1']}-${commitOf['1.2']}`]);
  });

  it('commit 3 only pins stable to 1.1: plan says promote and builds nothing; ci points stable at the 1.1 commit, no build step runs; ostree pull gets 1.1', async () => {
    fx.write('images/a.yaml', manifest('1.1'));
    fx.commit('promote a 1.1 to stable');
    const p = plan();
    expect(p.affected).toEqual([]);
    expect(p.changes).toEqual({});
    expect(p.streams).toEqual([{ image: 'a', stream: 'stable', action: 'promote', ref: REFS.stable, to: '1.1', text: 'promote a 1.1 to stable' }]);
    const text = fx.cli(['plan']);
    expect(text.stdout).toContain('0 of 1 image(s) affected');
    expect(text.stdout).toMatch(/streams \(no build: publish moves the refs\)\n {2}promote a 1\.1 to stable {2}\(a\/x86_64\/stable\)/);

    const r = ci();
    expect(r.stderr).toContain('ci: 0 of 1 image(s) to build and publish');
    expect(r.built).toEqual([]);
    expect(r.published).toEqual([]);
    expect(r.streams.filter((s) => s.moved).map((s) => [s.stream, s.ref, s.version, s.commit])).toEqual([['stable', REFS.stable, '1.1', commitOf['1.1']]]);
    // The same commit, not a rebuild: the checksum is the one published for 1.1, its MANIFEST.json agrees.
    expect(publishedCommit(pub, REFS.stable)).toBe(commitOf['1.1']);
    expect(JSON.parse(fs.readFileSync(path.join(pub, 'images/a/1.1/MANIFEST.json'), 'utf8')).commit).toBe(commitOf['1.1']);
    expect(publishedCommit(pub, REFS.devel)).toBe(commitOf['1.2']);
    expect(sh('ostree', ['summary', '--view', `--repo=${repoDir}`])).toContain(`* ${REFS.stable}\n    Latest Commit (`);

    const pull = await pullStream(`${server!.url}/repo`, REFS.stable);
    clients.push(pull.dir);
    expect(pull.ok, pull.output).toBe(true);
    expect(pull.commit).toBe(commitOf['1.1']);
    expect(sh('ostree', ['show', `--repo=${path.join(pull.dir, 'repo')}`, pull.commit!, '--print-metadata-key=version']).trim()).toBe("'1.1'");
  });

  it('commit 4 pins 1.2: stable moves to 1.2 with a static delta 1.1 -> 1.2 for it', () => {
    fx.write('images/a.yaml', manifest('1.2'));
    fx.commit('promote a 1.2 to stable');
    expect(plan().streams.map((s) => s.text)).toEqual(['promote a 1.2 to stable']);
    const r = ci();
    expect(r.built).toEqual([]);
    const moved = r.streams.filter((s) => s.moved);
    expect(moved.map((s) => [s.stream, s.version, s.commit, s.previous, s.delta])).toEqual([['stable', '1.2', commitOf['1.2'], commitOf['1.1'], `${commitOf['1.1']!.slice(0, 12)}-${commitOf['1.2']!.slice(0, 12)}`]]);
    expect(publishedCommit(pub, REFS.stable)).toBe(commitOf['1.2']);
    expect(deltas()).toContain(`${commitOf['1.1']}-${commitOf['1.2']}`);
  });

  it('commit 5 rolls stable back to 1.1: plan says roll back, ci makes the 1.2 -> 1.1 delta, a pull follows it', async () => {
    expect(deltas()).not.toContain(`${commitOf['1.2']}-${commitOf['1.1']}`);
    fx.write('images/a.yaml', manifest('1.1'));
    fx.commit('roll back stable');
    const p = plan();
    expect(p.affected).toEqual([]);
    expect(p.streams.map((s) => [s.action, s.text])).toEqual([['rollback', 'roll back stable of a from 1.2 to 1.1']]);
    const r = ci();
    expect(r.built).toEqual([]);
    expect(publishedCommit(pub, REFS.stable)).toBe(commitOf['1.1']);
    expect(deltas()).toContain(`${commitOf['1.2']}-${commitOf['1.1']}`);
    const fsck = await execAsync('ostree', ['fsck', `--repo=${repoDir}`]);
    expect(fsck.code, fsck.stderr).toBe(0);
    const pull = await pullStream(`${server!.url}/repo`, REFS.stable);
    clients.push(pull.dir);
    expect(pull.commit).toBe(commitOf['1.1']);
  });

  it('kickstart, index.json and index.html list each stream', () => {
    for (const [name, ref] of [['stable', REFS.stable], ['testing', REFS.testing]] as const) {
      const ks = fs.readFileSync(path.join(pub, 'kickstart', `a-${name}.ks`), 'utf8');
      expect(parseOstreesetup(ks).ref).toBe(ref);
    }
    expect(parseOstreesetup(fs.readFileSync(path.join(pub, 'kickstart', 'a.ks'), 'utf8')).ref).toBe(REFS.devel);
    const img = indexJson().images.find((i) => i.name === 'a')!;
    expect(img.streams.map(({ name, ref, version, commit, follows }) => ({ name, ref, version, commit, follows }))).toEqual([
      { name: 'stable', ref: REFS.stable, version: '1.1', commit: commitOf['1.1'], follows: false },
      { name: 'testing', ref: REFS.testing, version: '1.2', commit: commitOf['1.2'], follows: true },
    ]);
    expect(img.streams[0]!.kickstart).toBe('http://127.0.0.1:8080/kickstart/a-stable.ks');
    const html = fs.readFileSync(path.join(pub, 'index.html'), 'utf8');
    expect(html).toContain('<tr data-stream="stable">');
    expect(html).toContain('<tr data-stream="testing">');
  });

  it('a pin to a version that is not published: ci exits 1 naming stream, version and the published versions, and moves nothing', () => {
    fx.write('images/a.yaml', manifest('1.9'));
    fx.commit('pin a version that does not exist');
    const before = publishedCommit(pub, REFS.stable);
    const r = fx.cli(['ci', '--since', 'HEAD~1']);
    expect(r.code).toBe(1);
    expect(r.stderr).not.toMatch(STACK_TRACE);
    expect(r.stderr).toContain('stream "stable" of a pins version 1.9, which is not published (published versions of a: 1.1, 1.2)');
    expect(publishedCommit(pub, REFS.stable)).toBe(before);
    // The same for publish.
    const p = fx.cli(['publish', 'a']);
    expect(p.code).toBe(1);
    expect(p.stderr).toContain('pins version 1.9, which is not published');
    fx.write('images/a.yaml', manifest('1.1'));
    fx.commit('back to 1.1');
  });

  it('retention keeps the pinned version and its commit (keep: 1), prunes the rest', async () => {
    fx.write('treecast.yaml', 'retention: { keep: 1 }\n');
    fx.write('overlays/oa/etc/oa/config', 'oa v3\n');
    fx.commit('keep one version; edit oa');
    const r = ci();
    expect(r.published.map((p) => p.version)).toEqual(['1.3']);
    expect(fs.readdirSync(path.join(pub, 'images/a')).filter((d) => !d.startsWith('.')).sort()).toEqual(['1.1', '1.3', 'latest']);
    expect(publishedCommit(pub, REFS.stable)).toBe(commitOf['1.1']);
    expect(publishedCommit(pub, REFS.testing)).toBe(r.published[0]!.commit);
    // 1.2's commit is gone (no ref points at it); 1.1's stays because the stable ref does.
    expect((await execAsync('ostree', ['show', `--repo=${repoDir}`, commitOf['1.2']!])).code).not.toBe(0);
    expect((await execAsync('ostree', ['show', `--repo=${repoDir}`, commitOf['1.1']!])).code).toBe(0);
    expect(indexJson().images[0]!.versions.map((v) => v.version)).toEqual(['1.3', '1.1']);
    const pull = await pullStream(`${server!.url}/repo`, REFS.stable);
    clients.push(pull.dir);
    expect(pull.ok, pull.output).toBe(true);
    expect(pull.commit).toBe(commitOf['1.1']);
  });
});

describe('validate: stream errors are located in the manifest', () => {
  let fx: Fixture | undefined;
  afterAll(() => fx?.cleanup());

  it('a pin on the image own ref, an unquoted version and a ref used twice are file:line:col errors', () => {
    fx = gitopsRepo({ images: ['a', 'b'], prefix: 'streams-validate' });
    const a = manifestA('streams:\n  stable: { version: "1.1" }\n  beta: { version: 1.1 }\n  lts: { ref: b/x86_64/stable }\n');
    fx.write('images/a.yaml', a);
    const r = fx.cli(['validate']);
    expect(r.code).toBe(1);
    expect(r.stderr).not.toMatch(STACK_TRACE);
    const out = r.stdout + r.stderr;
    expect(out).toContain(`images/a.yaml:${lineOf(a, /beta:/)}:`);
    expect(out).toMatch(/streams\.beta\.version: must be a version string such as "2026\.11\.3" \(quoted: YAML reads 1\.1 as a number\)/);
    fx.write('images/a.yaml', manifestA('streams:\n  stable: { version: "1.1" }\n  lts: { ref: b/x86_64/stable }\n'));
    const r2 = fx.cli(['validate']);
    expect(r2.code).toBe(1);
    const out2 = r2.stdout + r2.stderr;
    const a2 = manifestA('streams:\n  stable: { version: "1.1" }\n  lts: { ref: b/x86_64/stable }\n');
    expect(out2).toContain(`images/a.yaml:${lineOf(a2, /^ {2}stable:/)}:3: streams.stable: stream "stable" of a pins version 1.1 on the image's own ref a/x86_64/stable, where every build is published`);
    expect(out2).toContain(`images/a.yaml:${lineOf(a2, /^ {2}lts:/)}:3: streams.lts: ref "b/x86_64/stable" of stream "lts" of a is also the ref of image b`);
  });
});
