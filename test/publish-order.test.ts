/**
 * Publish order, one notion of "published version", published-only parents
 * and the summary/summary.sig pair (issue #12), with the real tools:
 * `treecast build/publish/serve` as child processes on the tiny tree fixture
 * (test/helpers/publish-fixture.ts), ostree as the client.
 *
 *  - keep 1: a rebuild with an OLDER SOURCE_DATE_EPOCH published after a
 *    newer one is what stays (latest, iPXE, kickstart, index.json, commit).
 *  - a local chain v1 (published) -> v2 (built only) -> v3 (published): v2
 *    never reaches the public repo; a v1 host upgrades to v3 by a static delta.
 *  - summary and summary.sig out of step (what a client can read while
 *    publish or an upload replaces them): the pull fails, changes nothing on
 *    the client, and simply running it again once the pair matches succeeds.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HOST, HOST_REF, NETBOOT, NETBOOT_REF, PublishFixture, clientRepo, exec, fsck, must, remoteAdd, revParse, type BuiltImage, type SigningKey } from './helpers/publish-fixture.js';
import { startServe, stopServe, settledAccessLines, type ServeProcess } from './helpers/serve.js';

interface IndexJson {
  images: { name: string; ref: string; latest: string; kickstart: string; ipxe?: string; versions: { version: string; commit: string; date: string; published: string | null }[] }[];
}

const readIndex = (pub: string) => JSON.parse(fs.readFileSync(path.join(pub, 'index.json'), 'utf8')) as IndexJson;
const versionDirs = (pub: string, name: string) => fs.readdirSync(path.join(pub, 'images', name)).filter((d) => !d.startsWith('.')).sort();
const hasCommit = async (repo: string, commit: string) => (await exec('ostree', ['show', `--repo=${repo}`, commit])).code === 0;

/**
 * A build whose SOURCE_DATE_EPOCH is `epoch` (treecast.yaml source-date-epoch, what a rebuild
 * of an older git commit gets from its commit time; not the environment variable, which
 * mksquashfs refuses next to its own -mkfs-time).
 */
async function buildAt(f: PublishFixture, epoch: number): Promise<Record<string, BuiltImage>> {
  const config = path.join(f.spec, 'treecast.yaml');
  const text = fs.readFileSync(config, 'utf8').replace(/^source-date-epoch:.*\n/m, '');
  fs.writeFileSync(config, `${text}source-date-epoch: ${epoch}\n`);
  return f.build();
}

/** Only the host image (the parents suite needs no diskless image): half the build work. */
async function buildHost(f: PublishFixture): Promise<Record<string, BuiltImage>> {
  const r = await f.treecast(['build', HOST, '--json', '--no-remote-history']);
  if (r.code !== 0) throw new Error(`treecast build failed (exit ${r.code}):\n${r.stderr}`);
  return Object.fromEntries((JSON.parse(r.stdout) as { images: BuiltImage[] }).images.map((i) => [i.name, i]));
}

/** The host image with only its OSTree commit (no squashfs, no tarball): these tests are about commits and order, and a third of the build time. */
async function commitOnlyHost(f: PublishFixture): Promise<void> {
  const file = path.join(f.spec, 'images', `${HOST}.yaml`);
  const yaml = fs.readFileSync(file, 'utf8');
  const slim = yaml.replace(/^ {2}(squashfs|tarball): \{\}\n/gm, '');
  expect(slim).not.toBe(yaml);
  fs.writeFileSync(file, slim);
  await f.commit('host: commit only');
}

describe('retention by publish order (keep 1)', () => {
  let f: PublishFixture;
  let pub: string;
  const url = 'http://127.0.0.1:9/tree';
  let v2: Record<string, BuiltImage>;
  let v3: Record<string, BuiltImage>;

  beforeAll(async () => {
    f = await PublishFixture.create('order', { keep: 1 });
    await commitOnlyHost(f);
    pub = f.dir('public');
    v2 = await buildAt(f, 1_800_000_000);
    await f.mustPublish(pub, { url });
    f.editTree('etc/motd', 'treecast fixture: a rebuild of an older git commit\n');
    await f.commit('v3');
    // Built from a commit whose time is older than v2's: an older build time, but the newer publish.
    v3 = await buildAt(f, 1_700_000_000);
    await f.mustPublish(pub, { url });
  });

  afterAll(async () => {
    await f?.cleanup();
  });

  it('v3 (older SOURCE_DATE_EPOCH, published last) stays: latest, iPXE, kickstart, index.json and its commit; v2 is gone, artifacts and commit', async () => {
    const repo = path.join(pub, 'repo');
    for (const name of [HOST, NETBOOT]) {
      expect(v3[name]!.version).not.toBe(v2[name]!.version);
      const m3 = JSON.parse(fs.readFileSync(path.join(pub, 'images', name, v3[name]!.version, 'MANIFEST.json'), 'utf8')) as { buildTime: string };
      expect(m3.buildTime).toBe(new Date(1_700_000_000_000).toISOString());
      expect(versionDirs(pub, name)).toEqual([v3[name]!.version, 'latest'].sort());
      expect(fs.readlinkSync(path.join(pub, 'images', name, 'latest'))).toBe(v3[name]!.version);
      const record = JSON.parse(fs.readFileSync(path.join(pub, 'images', name, v3[name]!.version, 'PUBLISHED.json'), 'utf8')) as { sequence: number; commit: string };
      expect(record).toMatchObject({ sequence: 2, commit: v3[name]!.commit });
      expect(await hasCommit(repo, v3[name]!.commit), `${name} v3 commit in the public repo`).toBe(true);
      expect(await hasCommit(repo, v2[name]!.commit), `${name} v2 commit pruned`).toBe(false);
    }
    expect(await revParse(repo, HOST_REF)).toBe(v3[HOST]!.commit);
    expect(await revParse(repo, NETBOOT_REF)).toBe(v3[NETBOOT]!.commit);

    const idx = readIndex(pub);
    expect(idx.images.map((i) => i.name)).toEqual([HOST, NETBOOT]);
    for (const img of idx.images) {
      expect(img.latest).toBe(v3[img.name]!.version);
      expect(img.versions.map((v) => [v.version, v.commit])).toEqual([[v3[img.name]!.version, v3[img.name]!.commit]]);
      expect(img.versions[0]!.published).toMatch(/^\d{4}-\d\d-\d\dT/);
    }

    // Every URL the boot script and the kickstart name resolves to a file of the tree.
    const ipxe = fs.readFileSync(path.join(pub, 'boot', `${NETBOOT}.ipxe`), 'utf8');
    const urls = [...ipxe.matchAll(new RegExp(`${url.replace(/[.:/]/g, '\\$&')}/(\\S+)`, 'g'))].map((m) => m[1]!.replace(/[?#].*$/, ''));
    expect(urls.length).toBeGreaterThan(0);
    expect(urls.some((u) => u.includes(`/${v3[NETBOOT]!.version}/`)), ipxe).toBe(true);
    for (const u of urls) expect(fs.existsSync(path.join(pub, u)), `${u} named by boot/${NETBOOT}.ipxe`).toBe(true);
    const ks = fs.readFileSync(path.join(pub, 'kickstart', `${HOST}.ks`), 'utf8');
    expect(ks).toContain(`published version ${v3[HOST]!.version}`);
    expect(ks).toContain(`--ref=${HOST_REF}`);
    expect(ks).toContain(`--url=${url}/repo`);
    const r = await fsck(repo);
    expect(r.ok, r.output).toBe(true);
  });
});

describe('published-only parents and the summary/summary.sig pair (signed, static deltas)', () => {
  let f: PublishFixture;
  let pub: string;
  let key: SigningKey;
  let serve: ServeProcess;
  let client: string;
  let v1: Record<string, BuiltImage>;
  let v2: Record<string, BuiltImage>;
  let v3: Record<string, BuiltImage>;
  /** summary and summary.sig as v1's publish left them. */
  let old: { summary: Buffer; sig: Buffer };

  beforeAll(async () => {
    f = await PublishFixture.create('parents');
    pub = f.dir('public');
    serve = await startServe(pub, path.join(f.root, 'serve.log'));
    f.setConfig({ url: serve.url });
    await commitOnlyHost(f);
    key = await f.keygen();
    v1 = await buildHost(f);
    await f.mustPublish(pub, { key, extra: [HOST] });
    old = { summary: fs.readFileSync(path.join(pub, 'repo/summary')), sig: fs.readFileSync(path.join(pub, 'repo/summary.sig')) };
    // A host on v1 (bare-user like a deployment: ostree uses static deltas only for non-archive repos).
    client = await clientRepo(f.dir('client'), 'bare-user');
    await remoteAdd(client, 'origin', `${serve.url}/repo`, HOST_REF, { gpgImport: key.publicKeyFile });
    await must('ostree', [`--repo=${client}`, 'pull', 'origin', HOST_REF]);

    f.editTree('etc/motd', 'treecast fixture v2: built, never published\n');
    await f.commit('v2');
    v2 = await buildHost(f);
    f.editTree('etc/motd', 'treecast fixture v3\n');
    await f.commit('v3');
    v3 = await buildHost(f);
    await f.mustPublish(pub, { key, extra: [HOST] });
  });

  afterAll(async () => {
    await stopServe(serve);
    await f?.cleanup();
  });

  it('the local chain is v1 -> v2 -> v3, the public repo holds v1 and v3 but not v2; a static delta v1 -> v3 exists', async () => {
    const local = path.join(f.cache, 'repo');
    expect(await revParse(local, `${v3[HOST]!.commit}^`)).toBe(v2[HOST]!.commit);
    expect(await revParse(local, `${v2[HOST]!.commit}^`)).toBe(v1[HOST]!.commit);
    const repo = path.join(pub, 'repo');
    expect(await hasCommit(repo, v1[HOST]!.commit)).toBe(true);
    expect(await hasCommit(repo, v3[HOST]!.commit)).toBe(true);
    expect(await hasCommit(repo, v2[HOST]!.commit), 'v2 was never published').toBe(false);
    expect(fs.existsSync(path.join(pub, 'images', HOST, v2[HOST]!.version))).toBe(false);
    // ostree shows the gap as the end of the fetched history, not as an error.
    const log = await must('ostree', ['log', `--repo=${repo}`, HOST_REF]);
    expect([...log.stdout.matchAll(/^commit (\S+)/gm)].map((m) => m[1])).toEqual([v3[HOST]!.commit]);
    expect(log.stdout).toContain('<< History beyond this commit not fetched >>');
    const deltas = await must('ostree', ['static-delta', 'list', `--repo=${repo}`]);
    expect(deltas.stdout).toContain(`${v1[HOST]!.commit}-${v3[HOST]!.commit}`);
    // index.json: both published versions, the newest publish first; each commit is in the repo.
    const img = readIndex(pub).images.find((i) => i.name === HOST)!;
    expect(img.versions.map((v) => v.version)).toEqual([v3[HOST]!.version, v1[HOST]!.version]);
    expect(img.latest).toBe(v3[HOST]!.version);
    const r = await fsck(repo);
    expect(r.ok, r.output).toBe(true);
  });

  it('summary and summary.sig out of step: nothing changes on any client, at worst the pull fails; the plain retry once they match upgrades v1 -> v3 through the delta', async () => {
    const summary = path.join(pub, 'repo/summary');
    const sig = path.join(pub, 'repo/summary.sig');
    const current = { summary: fs.readFileSync(summary), sig: fs.readFileSync(sig) };
    expect(current.summary.equals(old.summary)).toBe(false);
    const fresh = async (n: number) => {
      const dir = await clientRepo(f.dir(`client-fresh-${n}`), 'bare-user');
      await remoteAdd(dir, 'origin', `${serve.url}/repo`, HOST_REF, { gpgImport: key.publicKeyFile });
      return dir;
    };
    const pull = (repo: string, extra: string[] = []) => exec('ostree', [`--repo=${repo}`, 'pull', ...extra, 'origin', HOST_REF]);
    const outcomes: string[] = [];
    const freshClients: string[] = [];
    try {
      // The new summary with the old signature: the v1 host fetches summary.sig first, finds the
      // signature of the summary it has cached and uses that one, i.e. still sees v1 (no error,
      // no upgrade yet). A client without that cache gets the new summary, which the old
      // signature does not verify: refused.
      fs.writeFileSync(summary, current.summary);
      fs.writeFileSync(sig, old.sig);
      let r = await pull(client);
      outcomes.push(`new summary + old sig, v1 host: exit ${r.code} ${r.stderr.trim()}`);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(await revParse(client, `origin:${HOST_REF}`)).toBe(v1[HOST]!.commit);
      freshClients.push(await fresh(1));
      r = await pull(freshClients[0]!);
      outcomes.push(`new summary + old sig, new client: exit ${r.code} ${r.stderr.trim()}`);
      expect(r.code, `a mismatched pair must be refused:\n${r.stdout}${r.stderr}`).not.toBe(0);
      expect(r.stderr).toMatch(/signature|GPG/i);
      expect(await revParse(freshClients[0]!, `origin:${HOST_REF}`)).toBeUndefined();

      // No summary.sig at all: what `ostree summary -u --gpg-sign` (2022.7) serves while gpg signs,
      // between renaming the new summary into place and the new summary.sig. Refused by both.
      fs.rmSync(sig);
      freshClients.push(await fresh(2));
      for (const [who, repo, before] of [
        ['v1 host', client, v1[HOST]!.commit],
        ['new client', freshClients[1]!, undefined],
      ] as const) {
        r = await pull(repo);
        outcomes.push(`new summary, no sig, ${who}: exit ${r.code} ${r.stderr.trim()}`);
        expect(r.code, `a summary without its signature must be refused:\n${r.stdout}${r.stderr}`).not.toBe(0);
        expect(r.stderr).toMatch(/summary\.sig|signature|GPG/i);
        expect(await revParse(repo, `origin:${HOST_REF}`)).toBe(before);
      }

      // The old summary with the new signature: refused by both (the v1 host's cache is keyed by the signature).
      fs.writeFileSync(summary, old.summary);
      fs.writeFileSync(sig, current.sig);
      freshClients.push(await fresh(3));
      for (const [who, repo, before] of [
        ['v1 host', client, v1[HOST]!.commit],
        ['new client', freshClients[2]!, undefined],
      ] as const) {
        r = await pull(repo);
        outcomes.push(`old summary + new sig, ${who}: exit ${r.code} ${r.stderr.trim()}`);
        expect(r.code, `a mismatched pair must be refused:\n${r.stdout}${r.stderr}`).not.toBe(0);
        expect(r.stderr).toMatch(/signature|GPG/i);
        expect(await revParse(repo, `origin:${HOST_REF}`)).toBe(before);
      }
    } finally {
      fs.writeFileSync(summary, current.summary);
      fs.writeFileSync(sig, current.sig);
    }
    console.log(`summary/summary.sig out of step, ostree ${(await must('ostree', ['--version'])).stdout.match(/Version: '([^']+)'/)?.[1]}:\n  ${outcomes.join('\n  ')}`);

    // The plain retry, nothing cleaned on any client: a refused summary is not cached, so it cannot poison the next pull.
    const before = (await settledAccessLines(serve)).length;
    const r = await pull(client, ['--require-static-deltas']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(await revParse(client, `origin:${HOST_REF}`)).toBe(v3[HOST]!.commit);
    const requests = (await settledAccessLines(serve)).slice(before);
    expect(requests.some((l) => /"GET \/repo\/deltas\/\S+" 200 /.test(l)), requests.join('\n')).toBe(true);
    for (const repo of freshClients) {
      const again = await pull(repo);
      expect(again.code, again.stdout + again.stderr).toBe(0);
      expect(await revParse(repo, `origin:${HOST_REF}`)).toBe(v3[HOST]!.commit);
    }
    const c = await fsck(client);
    expect(c.ok, c.output).toBe(true);
  });
});
