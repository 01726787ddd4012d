/**
 * Publish survives SIGKILL at any point (docs/design: "A crash at any point
 * leaves the previous published state intact").
 *
 * A good signed v1 publish is kept as a snapshot; v2 is built. Each case
 * copies the snapshot, runs `treecast publish` for v2 and kills it: either
 * with the test-only TREECAST_TEST_CRASH_AFTER=PHASE hook (the publisher SIGKILLs itself
 * right after that phase) or from outside after N ms. Then, with the real
 * ostree client against compiler/serve on 127.0.0.1:
 *  - a fresh client pulls each ref and gets v1 (v2 only once the summary
 *    naming it is written), with commit and summary signatures verified;
 *  - `ostree fsck` is clean; index.json is valid JSON and every URL it lists
 *    is served; boot/ and kickstart/ point at complete version dirs;
 *  - every visible version dir is complete (SHA256SUMS + .asc verify),
 *    leftovers are invisible over HTTP;
 * and a normal publish afterwards finishes the job (ref at v2, leftovers gone).
 * The publisher's orphaned children (ostree, gpg) are waited for before
 * checking, as they would run to completion after a real kill too.
 */
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer } from '../compiler/serve/index.js';
import {
  HOST,
  HOST_REF,
  NETBOOT,
  NETBOOT_REF,
  PublishFixture,
  exec,
  findNames,
  freshPull,
  fsck,
  must,
  revParse,
  waitForProcessGroup,
  type BuiltImage,
  type ProcResult,
  type SigningKey,
} from './helpers/publish-fixture.js';

const IMAGES: [string, string][] = [
  [HOST, HOST_REF],
  [NETBOOT, NETBOOT_REF],
];
const LEFTOVER = /^\.staging-|\.tmp-\d+$|\.old-\d+-\d+$/;

let f: PublishFixture;
let key: SigningKey;
let v1: Record<string, BuiltImage>;
let v2: Record<string, BuiltImage>;
let snapshot: string;
let gpgHome: string;
let caseNo = 0;

beforeAll(async () => {
  f = await PublishFixture.create('crash', { url: 'http://127.0.0.1:8080' });
  key = await f.keygen();
  gpgHome = f.dir('gpg-verify');
  fs.chmodSync(gpgHome, 0o700);
  await must('gpg', ['--homedir', gpgHome, '--batch', '--import', key.publicKeyFile]);
  v1 = await f.build();
  snapshot = f.dir('snapshot-v1');
  await f.mustPublish(snapshot, { key });
  expect((await fsck(path.join(snapshot, 'repo'))).ok).toBe(true);
  f.editTree('etc/motd', 'treecast fixture v2\n');
  await f.commit('v2: new motd');
  v2 = await f.build();
  // A complete, uninterrupted v2 publish: the reference for the end state.
  const dir = copySnapshot('timing');
  await f.mustPublish(dir, { key });
  await expectFinished(dir);
});

afterAll(async () => {
  await f?.cleanup();
});

function copySnapshot(name: string): string {
  const dir = path.join(f.root, `case-${++caseNo}-${name}`);
  fs.cpSync(snapshot, dir, { recursive: true, verbatimSymlinks: true });
  return dir;
}

async function expectFsckClean(dir: string): Promise<void> {
  const r = await fsck(path.join(dir, 'repo'));
  expect(r.ok, r.output).toBe(true);
}

/** Version dirs a reader can see: images/<name>/<v> without the dot-prefixed staging ones. */
function visibleVersions(dir: string, name: string): string[] {
  const d = path.join(dir, 'images', name);
  if (!fs.existsSync(d)) return [];
  return fs.readdirSync(d).filter((e) => !e.startsWith('.') && e !== 'latest');
}

async function expectCompleteVersionDir(vdir: string): Promise<void> {
  for (const f of ['MANIFEST.json', 'SHA256SUMS', 'SHA256SUMS.asc']) expect(fs.existsSync(path.join(vdir, f)), `${vdir}/${f}`).toBe(true);
  const m = JSON.parse(fs.readFileSync(path.join(vdir, 'MANIFEST.json'), 'utf8')) as { artifacts: { file: string }[] };
  const sums = fs.readFileSync(path.join(vdir, 'SHA256SUMS'), 'utf8');
  for (const a of m.artifacts) expect(sums).toContain(`  ${a.file}\n`);
  const check = await exec('sha256sum', ['--strict', '-c', 'SHA256SUMS'], { cwd: vdir });
  expect(check.code, `${vdir}: ${check.stdout}${check.stderr}`).toBe(0);
  const sig = await exec('gpg', ['--homedir', gpgHome, '--batch', '--verify', 'SHA256SUMS.asc', 'SHA256SUMS'], { cwd: vdir });
  expect(sig.code, sig.stderr).toBe(0);
}

interface ServedState {
  /** What a fresh client pulls for each image. */
  pulled: Record<string, string>;
  /** Newest version index.json lists for each image. */
  indexLatest: Record<string, string>;
}

/**
 * The published tree, served, is a consistent state: the previous one or the
 * new one, never a mix that breaks a reader.
 */
async function expectConsistentServedState(dir: string): Promise<ServedState> {
  await expectFsckClean(dir);
  const server = await startServer({ dir, host: '127.0.0.1', port: 0, log: () => {} });
  const pulled: Record<string, string> = {};
  const indexLatest: Record<string, string> = {};
  try {
    for (const [name, ref] of IMAGES) {
      const r = await freshPull(path.join(dir + '-client', name), `${server.url}/repo`, ref, { gpgImport: key.publicKeyFile });
      expect(r.ok, `${name}: ${r.output}`).toBe(true);
      expect([v1[name]!.commit, v2[name]!.commit]).toContain(r.commit);
      pulled[name] = r.commit!;

      // Version dirs: complete or absent; staging leftovers invisible over HTTP.
      const versions = visibleVersions(dir, name);
      expect(versions).toContain(pulled[name] === v1[name]!.commit ? v1[name]!.version : v2[name]!.version);
      for (const v of versions) {
        expect([v1[name]!.version, v2[name]!.version]).toContain(v);
        await expectCompleteVersionDir(path.join(dir, 'images', name, v));
      }
      for (const hidden of fs.readdirSync(path.join(dir, 'images', name)).filter((e) => e.startsWith('.'))) {
        expect((await fetch(`${server.url}/images/${name}/${hidden}/MANIFEST.json`)).status).toBe(404);
      }
      const latest = path.join(dir, 'images', name, 'latest');
      expect(fs.existsSync(path.join(latest, 'MANIFEST.json')), `${latest} resolves to a complete version`).toBe(true);
    }

    // index.json: valid, and nothing it links to is missing.
    const idxRes = await fetch(`${server.url}/index.json`);
    expect(idxRes.status).toBe(200);
    const idx = JSON.parse(await idxRes.text()) as { images: { name: string; latest: string; versions: { version: string; artifacts: { url: string; size: number }[] }[] }[] };
    expect(idx.images.map((i) => i.name)).toEqual([HOST, NETBOOT]);
    for (const img of idx.images) {
      indexLatest[img.name] = img.latest;
      expect([v1[img.name]!.version, v2[img.name]!.version]).toContain(img.latest);
      for (const v of img.versions) {
        for (const a of v.artifacts) {
          // The tree was published for another URL; the same path on this server.
          const r = await fetch(`${server.url}${new URL(a.url).pathname}`, { method: 'HEAD' });
          expect(r.status, `index.json links ${a.url}`).toBe(200);
          expect(Number(r.headers.get('content-length'))).toBe(a.size);
        }
      }
    }
    // The iPXE script and kickstarts are whole and point at what exists.
    const ipxe = await (await fetch(`${server.url}/boot/${NETBOOT}.ipxe`)).text();
    expect(ipxe).toMatch(/^#!ipxe\n[\s\S]*\nboot\n$/);
    for (const url of ipxe.match(/http:\/\/\S+/g) ?? []) {
      const r = await fetch(`${server.url}${new URL(url).pathname}`, { method: 'HEAD' });
      expect(r.status, `iPXE script links ${url}`).toBe(200);
    }
    for (const [name] of IMAGES) {
      const ks = await fetch(`${server.url}/kickstart/${name}.ks`);
      expect(ks.status).toBe(200);
      expect(await ks.text()).toMatch(/^ostreesetup .*--ref=\S+$/m);
    }
  } finally {
    await server.close();
  }
  return { pulled, indexLatest };
}

/** After a normal publish: v2 everywhere, no leftovers. */
async function expectFinished(dir: string): Promise<void> {
  for (const [name, ref] of IMAGES) expect(await revParse(path.join(dir, 'repo'), ref)).toBe(v2[name]!.commit);
  expect(findNames(dir, LEFTOVER)).toEqual([]);
  const state = await expectConsistentServedState(dir);
  for (const [name] of IMAGES) {
    expect(state.pulled[name]).toBe(v2[name]!.commit);
    expect(state.indexLatest[name]).toBe(v2[name]!.version);
  }
}

async function publishAndFinish(dir: string, r: ProcResult): Promise<ServedState> {
  // Orphans of the killed publisher (ostree, gpg) finish their work first.
  await waitForProcessGroup(r.pid);
  const state = await expectConsistentServedState(dir);
  const again = await f.publish(dir, { key });
  expect(again.code, again.stderr).toBe(0);
  await expectFinished(dir);
  return state;
}

const PHASES = ['objects', 'artifact-staging', 'artifacts', 'links', 'refs', 'summary', 'retention'] as const;
/** Phases after which the summary (what clients read) names v2. */
const V2_VISIBLE = new Set<string>(['summary', 'retention']);

const cases: { phase: (typeof PHASES)[number]; keep: number }[] = [
  ...PHASES.map((phase) => ({ phase, keep: 5 })),
  // keep 1: retention prunes v1 itself, the harshest case for the phases around it.
  ...(['objects', 'refs', 'summary', 'retention'] as const).map((phase) => ({ phase, keep: 1 })),
];

describe('TREECAST_TEST_CRASH_AFTER=PHASE (the publisher SIGKILLs itself)', () => {
  it.each(cases)('crash after $phase (retention keep $keep): v1 still served intact, the next publish completes v2', async ({ phase, keep }) => {
    f.setConfig({ keep });
    const dir = copySnapshot(`${phase}-keep${keep}`);
    const r = await f.publish(dir, { key, run: { detached: true, env: { TREECAST_TEST_CRASH_AFTER: phase } } });
    expect(r.signal, `exit ${r.code}: ${r.stderr}`).toBe('SIGKILL');
    const expected = V2_VISIBLE.has(phase) ? v2 : v1;
    // Staging leftovers exist exactly where the crash was inside the artifact phase.
    if (phase === 'artifact-staging') expect(findNames(path.join(dir, 'images'), /^\.staging-/).length).toBeGreaterThan(0);
    const state = await publishAndFinish(dir, r);
    for (const [name] of IMAGES) expect(state.pulled[name], `${name} after a crash after ${phase}`).toBe(expected[name]!.commit);
  });
});

describe('external SIGKILL during publish', () => {
  // Kills after a time (fractions of an uninterrupted publish's wall time) are swept in
  // test/reliability/kill-sweep.test.ts; here the kills aimed at events.
  // Kills the moment the publisher is seen doing something (polled every few ms from outside):
  // the late phases, which a time-based kill rarely hits on a fast machine.
  const hostRefFile = (dir: string) => path.join(dir, 'repo/refs/heads', HOST_REF);
  const readOr = (file: string) => {
    try {
      return fs.readFileSync(file);
    } catch {
      return undefined;
    }
  };
  const events: { event: string; keep: number; seen: (dir: string, before: { summary?: Buffer }) => boolean }[] = [
    { event: 'a staging dir appears', keep: 5, seen: (dir) => findNames(path.join(dir, 'images'), /^\.staging-/).length > 0 },
    { event: 'the v2 version dir appears', keep: 1, seen: (dir) => fs.existsSync(path.join(dir, 'images', HOST, v2[HOST]!.version)) },
    { event: 'the host ref moves to v2', keep: 1, seen: (dir) => readOr(hostRefFile(dir))?.toString().trim() === v2[HOST]!.commit },
    { event: 'the summary is rewritten', keep: 1, seen: (dir, before) => !readOr(path.join(dir, 'repo/summary'))?.equals(before.summary!) },
    { event: 'index.json lists v2', keep: 1, seen: (dir) => readOr(path.join(dir, 'index.json'))?.includes(`"${v2[HOST]!.version}"`) ?? false },
  ];
  it.each(events)('killed when $event (keep $keep): a consistent state is served, the next publish completes', async ({ event, keep, seen }) => {
    f.setConfig({ keep });
    const dir = copySnapshot(`kill-on-${event.replace(/\W+/g, '-')}`);
    const before = { summary: fs.readFileSync(path.join(dir, 'repo/summary')) };
    let child: ChildProcess | undefined;
    let fired = false;
    let running = true;
    const watcher = (async () => {
      while (running) {
        if (child && !fired && seen(dir, before)) {
          fired = true;
          child.kill('SIGKILL');
        }
        await new Promise((r) => setTimeout(r, 2));
      }
    })();
    const r = await f.publish(dir, { key, run: { detached: true, onSpawn: (c) => (child = c) } });
    running = false;
    await watcher;
    expect(fired, `never saw: ${event}`).toBe(true);
    expect(r.signal, `exit ${r.code}: ${r.stderr}`).toBe('SIGKILL');
    const state = await publishAndFinish(dir, r);
    console.info(`killed when ${event}: ${describeState(state)}`);
  });
});

function describeState(state: ServedState): string {
  return `then served ${IMAGES.map(([n]) => `${n}=${state.pulled[n] === v2[n]!.commit ? 'v2' : 'v1'}`).join(' ')}, index.json latest ${IMAGES.map(([n]) => state.indexLatest[n]).join(' ')}`;
}
