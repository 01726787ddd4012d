/**
 * SIGKILL sweeps (issue #12): 20 kills spread over a `treecast build` and 20
 * over a `treecast publish`, each killing the whole process group (the CLI
 * and the ostree, mksquashfs, tar, flock it runs), as a CI runner's timeout
 * does. 10 points of each are fractions of the wall time of an uninterrupted
 * run (5 %, 15 %, ... 95 %), 10 are events seen from outside (polling the
 * cache or publish dir).
 *
 * Fixture: test/helpers/publish-fixture.ts (a tiny tree, no Debian): `host`
 * (ostree + squashfs + tarball) and `netboot`, derived from it (squashfs +
 * diskless). v1 is built and published once; those states are snapshots
 * (`cp -a`: the bare-user build repo keeps ownership in xattrs) that every
 * kill run starts from, building or publishing v2.
 *
 * After each kill: `ostree fsck` clean, refs at v1 or at the complete v2
 * commit, every visible version dir complete (sha256 of every file). Then the
 * next run completes, leaves no leftovers and ends at the same v2 as an
 * uninterrupted run. publish-crash.test.ts kills publish at its named phases
 * and checks what clients pull over HTTP; the points here fall between them.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireTool } from '../helpers/build-fixture.js';
import { HOST, HOST_REF, NETBOOT, NETBOOT_REF, PublishFixture, findNames, fsck, must, revParse, waitForProcessGroup, type ProcResult } from '../helpers/publish-fixture.js';

const IMAGES: [string, string][] = [
  [HOST, HOST_REF],
  [NETBOOT, NETBOOT_REF],
];
/** Leftovers of a killed publish or emit: staging dirs, temp files, moved-aside version dirs. */
const LEFTOVER = /^\.staging-|\.tmp-\d+$|\.old-\d+-\d+$/;

interface Built {
  name: string;
  ref: string;
  commit: string;
  version: string;
  cached: boolean;
  artifacts: { type: string; path: string; size: number; sha256: string }[];
}

let f: PublishFixture;
let v1: Record<string, Built>;
let v2: Record<string, Built>;
/** The cache dir after the v1 build, and the publish dir after publishing v1. */
let cacheV1: string;
let publicV1: string;
/** Wall times of an uninterrupted v2 build (from cacheV1) and v2 publish (from publicV1). */
let buildMs = 0;
let publishMs = 0;
let runNo = 0;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  for (const t of ['ostree', 'mksquashfs', 'tar', 'flock', 'cp']) requireTool(t);
  f = await PublishFixture.create('kill-sweep', { url: 'http://127.0.0.1:8080' });
  v1 = await build(f.cache);
  cacheV1 = path.join(f.root, 'cache-v1');
  await must('cp', ['-a', f.cache, cacheV1]);
  publicV1 = path.join(f.root, 'public-v1');
  await f.mustPublish(publicV1);
  f.editTree('etc/motd', 'treecast fixture v2\n');
  await f.commit('v2: new motd');
  // The reference: an uninterrupted v2 build; f.cache then holds what the publish sweep publishes.
  const t0 = performance.now();
  v2 = await build(f.cache);
  buildMs = performance.now() - t0;
  for (const [name] of IMAGES) expect(v2[name]!.commit).not.toBe(v1[name]!.commit);
  const dir = await restore(publicV1, 'publish-timing');
  const t1 = performance.now();
  await f.mustPublish(dir);
  publishMs = performance.now() - t1;
  await expectPublishFinished(dir);
  fs.rmSync(dir, { recursive: true, force: true });
}, 600_000);

afterAll(async () => {
  await f?.cleanup();
});

async function build(cacheDir: string): Promise<Record<string, Built>> {
  const r = await f.treecast(['build', '--json', '--no-remote-history'], { env: { TREECAST_CACHE_DIR: cacheDir } });
  if (r.code !== 0) throw new Error(`treecast build failed (exit ${r.code}, signal ${r.signal}):\n${r.stderr}`);
  return Object.fromEntries((JSON.parse(r.stdout) as { images: Built[] }).images.map((i) => [i.name, i]));
}

/** A fresh copy of a snapshot for one run. */
async function restore(snapshot: string, name: string): Promise<string> {
  const dir = path.join(f.root, `run-${++runNo}-${name}`);
  await must('cp', ['-a', snapshot, dir]);
  return dir;
}

const sha256File = (file: string) => createHash('sha256').update(fs.readFileSync(file)).digest('hex');

function readOr(file: string): Buffer | undefined {
  try {
    return fs.readFileSync(file);
  } catch {
    return undefined;
  }
}

function entries(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

// ---------------------------------------------------------------------------
// killing
// ---------------------------------------------------------------------------

/** When to kill: after a fraction of the uninterrupted run's wall time, or when `seen` first holds. */
interface KillPoint {
  label: string;
  fraction?: number;
  seen?: (dir: string) => boolean;
}

interface Killed {
  result: ProcResult;
  /** ms after spawn when the group was killed; undefined when the run finished first. */
  atMs?: number;
}

/**
 * Runs `treecast args` in its own process group and SIGKILLs the whole group
 * at the point; resolves once no process of the group is left.
 */
async function runAndKill(args: string[], env: Record<string, string>, point: KillPoint, wallMs: number, watchDir: string): Promise<Killed> {
  let child: ChildProcess | undefined;
  let t0 = 0;
  let atMs: number | undefined;
  const kill = () => {
    if (atMs !== undefined || !child?.pid) return;
    atMs = performance.now() - t0;
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
      atMs = undefined; // already gone: it finished first
    }
  };
  let timer: NodeJS.Timeout | undefined;
  let polling = true;
  // Polled every 2 ms from outside, as fast as a directory listing allows.
  const watcher = (async () => {
    while (polling && point.seen) {
      if (child && atMs === undefined && point.seen(watchDir)) kill();
      await sleep(2);
    }
  })();
  const result = await f.treecast(args, {
    detached: true,
    env,
    timeoutMs: 120_000,
    onSpawn: (c) => {
      child = c;
      t0 = performance.now();
      if (point.fraction !== undefined) timer = setTimeout(kill, Math.round(point.fraction * wallMs));
    },
  });
  polling = false;
  clearTimeout(timer);
  await watcher;
  await waitForProcessGroup(result.pid);
  if (atMs !== undefined) expect(result.signal, `exit ${result.code}: ${result.stderr}`).toBe('SIGKILL');
  else expect(result.code, `finished first, but: ${result.stderr}`).toBe(0);
  return { result, atMs };
}

interface Row {
  point: string;
  killedAtMs?: number;
  found: string;
  next: string;
}

function printTable(title: string, wallMs: number, rows: Row[]): void {
  const w = Math.max(...rows.map((r) => r.point.length), 5);
  const lines = [`${title} (uninterrupted run: ${Math.round(wallMs)} ms)`, `${'point'.padEnd(w)}  killed at  state found after the kill | the next run`];
  for (const r of rows) lines.push(`${r.point.padEnd(w)}  ${(r.killedAtMs === undefined ? 'finished' : `${Math.round(r.killedAtMs)} ms`).padStart(9)}  ${r.found} | ${r.next}`);
  console.log(lines.join('\n'));
}

/** Which of v1/v2 each ref is at ("host=v2 netboot=v1"). */
function refState(refs: Record<string, string | undefined>): string {
  return IMAGES.map(([n]) => `${n}=${refs[n] === v2[n]!.commit ? 'v2' : refs[n] === v1[n]!.commit ? 'v1' : (refs[n] ?? 'none')}`).join(' ');
}

/**
 * A version dir a reader can see is complete: MANIFEST.json names the
 * expected commit, SHA256SUMS lists every artifact and every sha256 matches.
 */
function expectCompleteVersionDir(vdir: string, commit: string): void {
  const manifest = JSON.parse(fs.readFileSync(path.join(vdir, 'MANIFEST.json'), 'utf8')) as { commit: string; artifacts: { file: string; size: number; sha256: string }[] };
  expect(manifest.commit, `${vdir}/MANIFEST.json`).toBe(commit);
  const sums = new Map(
    fs
      .readFileSync(path.join(vdir, 'SHA256SUMS'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => [l.slice(66), l.slice(0, 64)] as const),
  );
  expect([...sums.keys()].sort(), `${vdir}/SHA256SUMS`).toEqual(manifest.artifacts.map((a) => a.file).sort());
  for (const a of manifest.artifacts) {
    const file = path.join(vdir, a.file);
    expect(fs.statSync(file).size, file).toBe(a.size);
    expect(sha256File(file), file).toBe(a.sha256);
    expect(sums.get(a.file), file).toBe(a.sha256);
  }
}

async function expectFsckClean(repo: string): Promise<void> {
  const r = await fsck(repo);
  expect(r.ok, r.output).toBe(true);
}

async function refsOf(repo: string): Promise<Record<string, string | undefined>> {
  return Object.fromEntries(await Promise.all(IMAGES.map(async ([name, ref]) => [name, await revParse(repo, ref)] as const)));
}

// ---------------------------------------------------------------------------
// build sweep
// ---------------------------------------------------------------------------

/** Entries of <cache>/tmp and dot entries of <cache>/out/<name>: what a killed build leaves. */
function buildLeftovers(cache: string): string[] {
  const out = [...entries(path.join(cache, 'tmp')).map((e) => `tmp/${e}`)];
  for (const [name] of IMAGES) for (const e of entries(path.join(cache, 'out', name))) if (e.startsWith('.')) out.push(`out/${name}/${e}`);
  return out;
}

/** The build cache is consistent: fsck clean, refs at v1 or v2, every version dir complete. */
async function expectBuildStateConsistent(cache: string): Promise<Record<string, string | undefined>> {
  const repo = path.join(cache, 'repo');
  await expectFsckClean(repo);
  const refs = await refsOf(repo);
  for (const [name] of IMAGES) {
    expect([v1[name]!.commit, v2[name]!.commit], `${name} ref`).toContain(refs[name]);
    for (const version of entries(path.join(cache, 'out', name)).filter((e) => !e.startsWith('.'))) {
      const expected = version === v1[name]!.version ? v1[name]! : version === v2[name]!.version ? v2[name]! : undefined;
      expect(expected, `out/${name}/${version}: neither v1 nor v2`).toBeDefined();
      expectCompleteVersionDir(path.join(cache, 'out', name, version), expected!.commit);
    }
  }
  return refs;
}

const buildPoints = (): KillPoint[] => {
  const tmpEntry = (cache: string, re: RegExp) => entries(path.join(cache, 'tmp')).find((e) => re.test(e));
  const staging = (cache: string, name: string) => entries(path.join(cache, 'out', name)).find((e) => e.startsWith('.staging-'));
  const refFile = (cache: string, ref: string) => path.join(cache, 'repo/refs/heads', ref);
  const atV2 = (cache: string, name: string, ref: string) => readOr(refFile(cache, ref))?.toString().trim() === v2[name]!.commit;
  return [
    ...[0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.85, 0.95].map((fraction) => ({ label: `${Math.round(fraction * 100)}% of the build`, fraction })),
    { label: 'tmp/host-* created', seen: (c) => Boolean(tmpEntry(c, /^host-(?!checkout)/)) },
    {
      label: 'the host root populated',
      seen: (c) => {
        const w = tmpEntry(c, /^host-(?!checkout)/);
        return Boolean(w && fs.existsSync(path.join(c, 'tmp', w, 'root/usr/share/treecast-test/blob.bin')));
      },
    },
    // ostree commit writes its objects into repo/tmp/staging-* and moves them into objects/ at the end.
    { label: 'ostree commit staging objects', seen: (c) => entries(path.join(c, 'repo/tmp')).some((e) => e.startsWith('staging-')) },
    { label: 'the host ref moves', seen: (c) => atV2(c, HOST, HOST_REF) },
    { label: 'tmp/host-checkout-* created', seen: (c) => Boolean(tmpEntry(c, /^host-checkout-/)) },
    { label: 'out/host/.staging-* created', seen: (c) => Boolean(staging(c, HOST)) },
    {
      label: 'host MANIFEST.json written',
      seen: (c) => {
        const s = staging(c, HOST);
        return Boolean(s && fs.existsSync(path.join(c, 'out', HOST, s, 'MANIFEST.json')));
      },
    },
    { label: 'out/host/<v2> appears', seen: (c) => fs.existsSync(path.join(c, 'out', HOST, v2[HOST]!.version)) },
    { label: 'the netboot ref moves', seen: (c) => atV2(c, NETBOOT, NETBOOT_REF) },
    {
      label: 'out/netboot/.staging-* has a squashfs',
      seen: (c) => {
        const s = staging(c, NETBOOT);
        return Boolean(s && entries(path.join(c, 'out', NETBOOT, s)).some((e) => e.endsWith('.squashfs')));
      },
    },
  ];
};

describe('SIGKILL sweep over `treecast build` (v1 cache, building v2)', () => {
  const rows: Row[] = [];
  afterAll(() => printTable('build sweep', buildMs, rows));

  it.each(buildPoints().map((p, i) => ({ ...p, i })))('killed at $label: the cache stays consistent and the next build completes v2', async (point) => {
    const cache = await restore(cacheV1, `build-${point.i}`);
    const env = { TREECAST_CACHE_DIR: cache };
    const { atMs } = await runAndKill(['build', '--json', '--no-remote-history'], env, point, buildMs, cache);
    if (point.seen) expect(atMs, `never saw: ${point.label}`).toBeDefined();

    const refs = await expectBuildStateConsistent(cache);
    const left = buildLeftovers(cache);
    const found = `${refState(refs)}; out: ${IMAGES.map(([n]) => `${n}[${entries(path.join(cache, 'out', n)).filter((e) => !e.startsWith('.')).join(',')}]`).join(' ')}; leftovers: ${left.length ? left.join(', ') : 'none'}`;

    // The next build: completes, removes the leftovers, ends where an uninterrupted build ends.
    const t0 = performance.now();
    const again = await build(cache);
    const againMs = performance.now() - t0;
    for (const [name] of IMAGES) {
      expect(again[name]!.commit, `${name} after the next build`).toBe(v2[name]!.commit);
      expect(again[name]!.version).toBe(v2[name]!.version);
      // Same bytes as the uninterrupted build (SOURCE_DATE_EPOCH): nothing half-written was reused.
      expect(again[name]!.artifacts.map((a) => [path.basename(a.path), a.sha256])).toEqual(v2[name]!.artifacts.map((a) => [path.basename(a.path), a.sha256]));
    }
    expect(buildLeftovers(cache)).toEqual([]);
    expect(await expectBuildStateConsistent(cache)).toEqual({ [HOST]: v2[HOST]!.commit, [NETBOOT]: v2[NETBOOT]!.commit });
    rows.push({ point: point.label, killedAtMs: atMs, found, next: `ok in ${Math.round(againMs)} ms (${IMAGES.map(([n]) => `${n} ${again[n]!.cached ? 'cached' : 'built'}`).join(', ')})` });
    fs.rmSync(cache, { recursive: true, force: true });
  }, 300_000);
});

// ---------------------------------------------------------------------------
// publish sweep
// ---------------------------------------------------------------------------

/** Refs the summary lists, with their commits (what clients read). */
async function summaryRefs(repo: string): Promise<Record<string, string>> {
  const r = await must('ostree', ['summary', `--repo=${repo}`, '--view']);
  const out: Record<string, string> = {};
  for (const m of r.stdout.matchAll(/^\* (\S+)\n\s+Latest Commit \([^)]*\):\n\s+([0-9a-f]{64})/gm)) out[m[1]!] = m[2]!;
  return out;
}

const objectFile = (repo: string, commit: string) => path.join(repo, 'objects', commit.slice(0, 2), `${commit.slice(2)}.commit`);

/** A file of the publish dir named by a URL of the published tree. */
const fileOfUrl = (dir: string, url: string) => path.join(dir, decodeURIComponent(new URL(url).pathname));

/**
 * The publish dir is a consistent published state: fsck clean, refs and the
 * summary at v1 or v2 with their commits present, every visible version dir
 * complete, `latest` resolving, index.json's files present with their sha256,
 * the iPXE script and kickstarts naming what exists.
 */
async function expectPublishStateConsistent(dir: string): Promise<{ refs: Record<string, string | undefined>; summary: Record<string, string>; latest: Record<string, string> }> {
  const repo = path.join(dir, 'repo');
  await expectFsckClean(repo);
  const refs = await refsOf(repo);
  const summary = await summaryRefs(repo);
  const latest: Record<string, string> = {};
  for (const [name, ref] of IMAGES) {
    expect([v1[name]!.commit, v2[name]!.commit], `${name} ref`).toContain(refs[name]);
    expect([v1[name]!.commit, v2[name]!.commit], `${ref} in the summary`).toContain(summary[ref]);
    expect(fs.existsSync(objectFile(repo, summary[ref]!)), `the summary's ${ref} commit is in the repo`).toBe(true);
    const imageDir = path.join(dir, 'images', name);
    for (const version of entries(imageDir).filter((e) => !e.startsWith('.') && e !== 'latest')) {
      const expected = version === v1[name]!.version ? v1[name]! : version === v2[name]!.version ? v2[name]! : undefined;
      expect(expected, `images/${name}/${version}: neither v1 nor v2`).toBeDefined();
      expectCompleteVersionDir(path.join(imageDir, version), expected!.commit);
    }
    latest[name] = fs.readlinkSync(path.join(imageDir, 'latest'));
    expect(fs.existsSync(path.join(imageDir, 'latest', 'MANIFEST.json')), `images/${name}/latest -> ${latest[name]} resolves`).toBe(true);
    const ks = fs.readFileSync(path.join(dir, 'kickstart', `${name}.ks`), 'utf8');
    const ksRef = /^ostreesetup .*--ref=(\S+)/m.exec(ks)?.[1];
    expect(ksRef, `kickstart/${name}.ks`).toBe(ref);
    expect(await revParse(repo, ksRef!), `kickstart/${name}.ks names ${ksRef}`).toBeDefined();
  }
  const index = JSON.parse(fs.readFileSync(path.join(dir, 'index.json'), 'utf8')) as {
    images: { name: string; latest: string; versions: { version: string; artifacts: { url: string; size: number; sha256: string }[] }[] }[];
  };
  expect(index.images.map((i) => i.name)).toEqual([HOST, NETBOOT]);
  for (const img of index.images) {
    for (const v of img.versions) {
      for (const a of v.artifacts) {
        const file = fileOfUrl(dir, a.url);
        expect(fs.existsSync(file), `index.json lists ${a.url}`).toBe(true);
        expect(sha256File(file), `index.json's sha256 of ${a.url}`).toBe(a.sha256);
        expect(fs.statSync(file).size).toBe(a.size);
      }
    }
  }
  const ipxe = fs.readFileSync(path.join(dir, 'boot', `${NETBOOT}.ipxe`), 'utf8');
  expect(ipxe).toMatch(/^#!ipxe\n[\s\S]*\nboot\n$/);
  const links = ipxe.match(/http:\/\/\S+/g) ?? [];
  expect(links.length).toBeGreaterThan(0);
  for (const url of links) expect(fs.existsSync(fileOfUrl(dir, url)), `boot/${NETBOOT}.ipxe links ${url}`).toBe(true);
  return { refs, summary, latest };
}

/** After a complete publish: v2 everywhere, no leftovers. */
async function expectPublishFinished(dir: string): Promise<void> {
  const s = await expectPublishStateConsistent(dir);
  for (const [name, ref] of IMAGES) {
    expect(s.refs[name]).toBe(v2[name]!.commit);
    expect(s.summary[ref]).toBe(v2[name]!.commit);
    expect(s.latest[name]).toBe(v2[name]!.version);
  }
  expect(findNames(dir, LEFTOVER)).toEqual([]);
}

const publishPoints = (): KillPoint[] => {
  const repoFile = (d: string, rel: string) => path.join(d, 'repo', rel);
  const lockHolder = (d: string) => readOr(path.join(d, '.treecast-publish.lock'))?.toString() ?? '';
  return [
    ...[0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.85, 0.95].map((fraction) => ({ label: `${Math.round(fraction * 100)}% of the publish`, fraction })),
    // publish-crash.test.ts kills at: a staging dir appears, the v2 version dir appears, the host ref
    // moves, the summary is rewritten, index.json lists v2. These are the events between those.
    // The snapshot's lock file names v1's publisher: a new holder is this publish.
    { label: 'the publish lock is taken', seen: (d) => lockHolder(d) !== lockHolder(publicV1) },
    { label: 'pull-local stages objects', seen: (d) => entries(repoFile(d, 'tmp')).some((e) => e.startsWith('staging-')) },
    { label: 'the host v2 commit object lands', seen: (d) => fs.existsSync(objectFile(path.join(d, 'repo'), v2[HOST]!.commit)) },
    { label: 'the host static delta appears', seen: (d) => entries(repoFile(d, 'deltas')).length > 0 },
    { label: 'the netboot v2 commit object lands', seen: (d) => fs.existsSync(objectFile(path.join(d, 'repo'), v2[NETBOOT]!.commit)) },
    { label: 'images/host/latest -> v2', seen: (d) => readlink(path.join(d, 'images', HOST, 'latest')) === v2[HOST]!.version },
    { label: 'kickstart/host.ks names v2', seen: (d) => readOr(path.join(d, 'kickstart', `${HOST}.ks`))?.includes(v2[HOST]!.version) ?? false },
    { label: 'boot/netboot.ipxe names v2', seen: (d) => readOr(path.join(d, 'boot', `${NETBOOT}.ipxe`))?.includes(v2[NETBOOT]!.version) ?? false },
    { label: 'the netboot ref moves', seen: (d) => readOr(repoFile(d, `refs/heads/${NETBOOT_REF}`))?.toString().trim() === v2[NETBOOT]!.commit },
    { label: 'index.html rewritten', seen: (d) => readOr(path.join(d, 'index.html'))?.includes(v2[HOST]!.version) ?? false },
  ];
};

function readlink(p: string): string | undefined {
  try {
    return fs.readlinkSync(p);
  } catch {
    return undefined;
  }
}

describe('SIGKILL sweep over `treecast publish` (v1 published, publishing v2)', () => {
  const rows: Row[] = [];
  afterAll(() => printTable('publish sweep', publishMs, rows));

  it.each(publishPoints().map((p, i) => ({ ...p, i })))('killed at $label: the published tree stays consistent and the next publish completes v2', async (point) => {
    const dir = await restore(publicV1, `publish-${point.i}`);
    const args = ['publish', '--dir', dir, '--json'];
    const { atMs } = await runAndKill(args, {}, point, publishMs, dir);
    if (point.seen) expect(atMs, `never saw: ${point.label}`).toBeDefined();

    const s = await expectPublishStateConsistent(dir);
    const left = findNames(dir, LEFTOVER);
    const ostreeTmp = entries(path.join(dir, 'repo/tmp')).filter((e) => e.startsWith('staging-'));
    const found = `refs ${refState(s.refs)}, summary ${refState(Object.fromEntries(IMAGES.map(([n, r]) => [n, s.summary[r]])))}, latest ${IMAGES.map(([n]) => s.latest[n]).join(' ')}; leftovers: ${[...left, ...ostreeTmp.map((e) => `repo/tmp/${e}`)].join(', ') || 'none'}`;

    const t0 = performance.now();
    const again = await f.publish(dir);
    const againMs = performance.now() - t0;
    expect(again.code, again.stderr).toBe(0);
    await expectPublishFinished(dir);
    rows.push({ point: point.label, killedAtMs: atMs, found, next: `ok in ${Math.round(againMs)} ms` });
    fs.rmSync(dir, { recursive: true, force: true });
  }, 300_000);
});
