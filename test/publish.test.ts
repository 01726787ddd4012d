/**
 * Publish and serve, end to end with real tools: `treecast build/publish/keygen`
 * run as child processes on a temporary git repository of image specs, the
 * publish dir served by compiler/serve on 127.0.0.1, and the real ostree
 * client (pull, admin init-fs/os-init/deploy/upgrade/undeploy) plus gpg.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../compiler/serve/index.js';
import {
  HOST,
  HOST_KERNEL_ARGS,
  HOST_REF,
  KVER,
  NETBOOT,
  NETBOOT_DISKLESS_ARGS,
  NETBOOT_REF,
  PublishFixture,
  clientRepo,
  exec,
  freshPull,
  fsck,
  must,
  parseAccessLog,
  remoteAdd,
  revParse,
  sumBytes,
  type BuiltImage,
  type SigningKey,
} from './helpers/publish-fixture.js';

interface PublishJson {
  dir: string;
  url: string;
  signed: boolean;
  images: { name: string; ref: string; version: string; commit: string; previous?: string; delta?: string }[];
}

interface IndexJson {
  url: string;
  repoUrl: string;
  remote: string;
  signed: boolean;
  publicKey?: string;
  images: {
    name: string;
    ref: string;
    latest: string;
    kickstart: string;
    ipxe?: string;
    kernelArgs: string[];
    versions: {
      version: string;
      commit: string;
      date: string;
      artifacts: { type: string; file: string; size: number; sha256: string; url: string }[];
      packageCount: number;
      changes: { added: unknown[]; removed: unknown[]; upgraded: unknown[] } | null;
    }[];
  }[];
}

async function expectFsckClean(repo: string): Promise<void> {
  const r = await fsck(repo);
  expect(r.ok, r.output).toBe(true);
}

async function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Headers; body: Buffer }> {
  const res = await fetch(url, { headers });
  return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
}

/** The boot loader entries of a sysroot: BLS `version` (higher boots first) and the deployment its ostree= path resolves to. */
function loaderEntries(sysroot: string): { file: string; version: number; options: string; deployment: string; linux: string; initrd: string }[] {
  const dir = path.join(sysroot, 'boot/loader/entries');
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.conf'))
    .map((file) => {
      const text = fs.readFileSync(path.join(dir, file), 'utf8');
      const key = (k: string) => new RegExp(`^${k} (.*)$`, 'm').exec(text)?.[1] ?? '';
      const options = key('options');
      const ostreePath = /(?:^|\s)ostree=(\S+)/.exec(options)?.[1];
      if (!ostreePath) throw new Error(`${file} has no ostree= option: ${text}`);
      return { file, version: Number(key('version')), options, deployment: path.basename(fs.realpathSync(path.join(sysroot, ostreePath))), linux: key('linux'), initrd: key('initrd') };
    })
    .sort((a, b) => b.version - a.version);
}

/** `ostree admin status` deployments of an OS, in the order listed (the first is the default). */
async function deployments(sysroot: string, osname: string): Promise<string[]> {
  const r = await must('ostree', ['admin', `--sysroot=${sysroot}`, 'status']);
  return [...r.stdout.matchAll(new RegExp(`^[ *]*${osname} ([0-9a-f]{64})\\.\\d+`, 'gm'))].map((m) => m[1]!);
}

/** Fields of the kickstart lines the tests care about, tokenized independently of compiler/publish/kickstart.ts. */
function parseKickstart(ks: string): { ostreesetup: Record<string, string | true>; bootloaderAppend?: string; lines: string[] } {
  const lines = ks.split('\n');
  const setupLines = lines.filter((l) => /^ostreesetup\s/.test(l));
  expect(setupLines).toHaveLength(1);
  const ostreesetup: Record<string, string | true> = {};
  for (const tok of setupLines[0]!.trim().split(/\s+/).slice(1)) {
    const m = /^--([a-z]+)(?:=(.+))?$/.exec(tok);
    if (!m) throw new Error(`unexpected ostreesetup token ${tok}`);
    ostreesetup[m[1]!] = m[2] ?? true;
  }
  const boot = lines.find((l) => /^bootloader\s/.test(l));
  const bootloaderAppend = boot ? /--append="([^"]*)"/.exec(boot)?.[1] : undefined;
  return { ostreesetup, bootloaderAppend, lines };
}

describe('publish and serve: signed v1 -> v2 with the real ostree client', () => {
  let f: PublishFixture;
  let server: RunningServer;
  let pub: string;
  let key: SigningKey;
  let v1: Record<string, BuiltImage>;
  let v2: Record<string, BuiltImage>;
  let sysroot: string;
  const logs: string[] = [];

  beforeAll(async () => {
    f = await PublishFixture.create('publish');
    pub = f.dir('public');
    server = await startServer({ dir: pub, host: '127.0.0.1', port: 0, log: (l) => logs.push(l) });
    f.setConfig({ url: server.url });
    await f.commit('publish at the test server');
    key = await f.keygen();
    v1 = await f.build();
    const r = await f.mustPublish(pub, { key });
    expect(r.stderr).not.toMatch(/no-gpg-verify/);
    const out = JSON.parse(r.stdout) as PublishJson;
    expect(out.signed).toBe(true);
    expect(out.images.map((i) => [i.name, i.commit])).toEqual([
      [HOST, v1[HOST]!.commit],
      [NETBOOT, v1[NETBOOT]!.commit],
    ]);
  });

  afterAll(async () => {
    await server?.close();
    await f?.cleanup();
  });

  it('keygen makes a key: fingerprint, homedir and the armoured public key, which publish puts at keys/treecast.asc', async () => {
    expect(key.fingerprint).toMatch(/^[0-9A-F]{40}$/);
    expect(key.publicKey).toContain('-----BEGIN PGP PUBLIC KEY BLOCK-----');
    const served = await get(`${server.url}/keys/treecast.asc`);
    expect(served.status).toBe(200);
    // The served key is the same key (armour headers may differ between exports).
    const gh = f.dir('gpg-verify');
    fs.chmodSync(gh, 0o700);
    fs.writeFileSync(path.join(gh, 'served.asc'), served.body);
    await must('gpg', ['--homedir', gh, '--batch', '--import', path.join(gh, 'served.asc')]);
    const listed = await must('gpg', ['--homedir', gh, '--batch', '--with-colons', '--list-keys']);
    expect(listed.stdout).toContain(`fpr:::::::::${key.fingerprint}:`);
    await expectFsckClean(path.join(pub, 'repo'));
  });

  it('a fresh client repo with the imported key (gpg-verify, gpg-verify-summary) pulls both refs; SHA256SUMS.asc verifies', async () => {
    for (const [ref, name] of [
      [HOST_REF, HOST],
      [NETBOOT_REF, NETBOOT],
    ] as const) {
      const r = await freshPull(f.dir(`client-signed-${name}`), `${server.url}/repo`, ref, { gpgImport: key.publicKeyFile });
      expect(r.ok, r.output).toBe(true);
      expect(r.commit).toBe(v1[name]!.commit);
      // Detached signature of the artifact checksums, checked with the public key only.
      const gh = f.dir(`gpg-${name}`);
      fs.chmodSync(gh, 0o700);
      await must('gpg', ['--homedir', gh, '--batch', '--import', key.publicKeyFile]);
      const vdir = path.join(pub, 'images', name, v1[name]!.version);
      const v = await exec('gpg', ['--homedir', gh, '--batch', '--verify', path.join(vdir, 'SHA256SUMS.asc'), path.join(vdir, 'SHA256SUMS')]);
      expect(v.code, v.stderr).toBe(0);
      expect(v.stderr).toMatch(/Good signature/);
      const sums = await exec('sha256sum', ['-c', 'SHA256SUMS'], { cwd: vdir });
      expect(sums.code, sums.stdout + sums.stderr).toBe(0);
    }
  });

  it('a tampered object (flipped bytes in a .filez) makes ostree pull fail', async () => {
    const tampered = f.dir('public-tampered');
    await must('cp', ['-a', `${pub}/.`, tampered]);
    // The biggest content object is the blob every commit carries.
    const objects = path.join(tampered, 'repo/objects');
    const filez = fs
      .readdirSync(objects)
      .flatMap((d) => fs.readdirSync(path.join(objects, d)).map((o) => path.join(objects, d, o)))
      .filter((p) => p.endsWith('.filez'))
      .sort((a, b) => fs.statSync(b).size - fs.statSync(a).size)[0]!;
    const bytes = fs.readFileSync(filez);
    const at = Math.floor(bytes.length / 2);
    for (let i = at; i < at + 16; i++) bytes[i] = bytes[i]! ^ 0xff;
    fs.writeFileSync(filez, bytes);
    const s2 = await startServer({ dir: tampered, host: '127.0.0.1', port: 0, log: () => {} });
    try {
      const signed = await freshPull(f.dir('client-tampered'), `${s2.url}/repo`, HOST_REF, { gpgImport: key.publicKeyFile });
      expect(signed.ok, signed.output).toBe(false);
      expect(signed.output).toMatch(/corrupt|checksum|invalid|error/i);
      console.info(`tampered pull refused: ${signed.output.trim().split('\n').pop()}`);
      // Not only the signature: the content checksum alone refuses it too.
      const unverified = await freshPull(f.dir('client-tampered-nogpg'), `${s2.url}/repo`, HOST_REF);
      expect(unverified.ok, unverified.output).toBe(false);
    } finally {
      await s2.close();
    }
    // The real tree is untouched.
    await expectFsckClean(path.join(pub, 'repo'));
  });

  it('sysroot: init-fs, os-init, remote add (signed), pull, deploy v1', async () => {
    sysroot = f.dir('sysroot');
    await must('ostree', ['admin', 'init-fs', sysroot]);
    await must('ostree', ['admin', `--sysroot=${sysroot}`, 'os-init', HOST]);
    const repo = path.join(sysroot, 'ostree/repo');
    await remoteAdd(repo, 'treecast', `${server.url}/repo`, HOST_REF, { gpgImport: key.publicKeyFile });
    await must('ostree', [`--repo=${repo}`, 'pull', 'treecast', HOST_REF]);
    await must('ostree', ['admin', `--sysroot=${sysroot}`, 'deploy', `--os=${HOST}`, '--karg=console=ttyS0', `treecast:${HOST_REF}`]);
    expect(await deployments(sysroot, HOST)).toEqual([v1[HOST]!.commit]);
    const [entry] = loaderEntries(sysroot);
    expect(entry!.deployment).toBe(`${v1[HOST]!.commit}.0`);
    expect(entry!.options.split(/\s+/)).toContain('console=ttyS0');
    expect(entry!.linux).toContain(`vmlinuz-${KVER}`);
    expect(fs.existsSync(path.join(sysroot, 'boot', entry!.linux))).toBe(true);
    expect(fs.existsSync(path.join(sysroot, 'boot', entry!.initrd))).toBe(true);
  });

  it('the kickstart parses: ostreesetup --osname/--remote/--url/--ref, no --nogpg when signed, bootloader --append has the kernel-args', async () => {
    const res = await get(`${server.url}/kickstart/${HOST}.ks`);
    expect(res.status).toBe(200);
    const ks = parseKickstart(res.body.toString('utf8'));
    expect(ks.ostreesetup).toEqual({ osname: HOST, remote: 'treecast', url: `${server.url}/repo`, ref: HOST_REF });
    expect(ks.bootloaderAppend?.split(' ')).toEqual(HOST_KERNEL_ARGS);
    // The host's own upgrades verify with the published key.
    expect(ks.lines.join('\n')).toContain(`${server.url}/keys/treecast.asc`);
    // The URL in the kickstart is a pullable repository.
    const pulled = await freshPull(f.dir('client-ks'), String(ks.ostreesetup.url), String(ks.ostreesetup.ref), { gpgImport: key.publicKeyFile });
    expect(pulled.ok, pulled.output).toBe(true);
  });

  it('the iPXE script points at kernel, initrd and root=live:<squashfs> URLs the server returns in full; Range gives 206', async () => {
    const res = await get(`${server.url}/boot/${NETBOOT}.ipxe`);
    expect(res.status).toBe(200);
    const script = res.body.toString('utf8');
    expect(script.split('\n')[0]).toBe('#!ipxe');
    const kernelLine = /^kernel (\S+) (.*)$/m.exec(script);
    const initrdLine = /^initrd (\S+)$/m.exec(script);
    expect(kernelLine, script).toBeTruthy();
    expect(initrdLine, script).toBeTruthy();
    expect(script).toMatch(/^boot$/m);
    const version = v1[NETBOOT]!.version;
    const vdir = path.join(pub, 'images', NETBOOT, version);
    const base = `${server.url}/images/${NETBOOT}/${version}`;
    expect(kernelLine![1]).toBe(`${base}/vmlinuz`);
    expect(initrdLine![1]).toBe(`${base}/initrd.img`);
    const downloads: [string, string][] = [
      [kernelLine![1]!, 'vmlinuz'],
      [initrdLine![1]!, 'initrd.img'],
    ];
    for (const [url, file] of downloads) {
      const r = await get(url);
      expect(r.status, url).toBe(200);
      expect(Number(r.headers.get('content-length'))).toBe(fs.statSync(path.join(vdir, file)).size);
      expect(r.body.equals(fs.readFileSync(path.join(vdir, file)))).toBe(true);
    }
    // The fixture kernel is the tree's /usr/lib/modules file.
    expect(fs.readFileSync(path.join(vdir, 'vmlinuz')).equals(fs.readFileSync(path.join(f.spec, 'tree/usr/lib/modules', KVER, 'vmlinuz')))).toBe(true);

    const args = kernelLine![2]!.split(/\s+/);
    const root = args.find((a) => a.startsWith('root=live:'));
    expect(root).toBe(`root=live:${base}/rootfs.squashfs`);
    expect(args).toEqual(expect.arrayContaining(['rd.live.image', ...NETBOOT_DISKLESS_ARGS, `treecast.commit=${v1[NETBOOT]!.commit}`, `treecast.version=${version}`]));
    const squashfsUrl = root!.slice('root=live:'.length);
    const squashfs = fs.readFileSync(path.join(vdir, 'rootfs.squashfs'));
    const head = await fetch(squashfsUrl, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(Number(head.headers.get('content-length'))).toBe(squashfs.length);
    const full = await get(squashfsUrl);
    expect(full.status).toBe(200);
    expect(full.body.equals(squashfs)).toBe(true);

    const range = await get(squashfsUrl, { Range: 'bytes=1000-5095' });
    expect(range.status).toBe(206);
    expect(range.headers.get('content-range')).toBe(`bytes 1000-5095/${squashfs.length}`);
    expect(range.body.equals(squashfs.subarray(1000, 5096))).toBe(true);
    const tail = await get(squashfsUrl, { Range: 'bytes=-512' });
    expect(tail.status).toBe(206);
    expect(tail.body.equals(squashfs.subarray(squashfs.length - 512))).toBe(true);
  });

  it('v2: one changed file in the tree, committed and built, publishes with a static delta from v1', async () => {
    f.editTree('etc/motd', 'treecast fixture v2\n');
    await f.commit('v2: new motd');
    v2 = await f.build();
    for (const name of [HOST, NETBOOT]) {
      expect(v2[name]!.commit).not.toBe(v1[name]!.commit);
      expect(v2[name]!.version).not.toBe(v1[name]!.version);
    }
    const r = await f.mustPublish(pub, { key });
    const out = JSON.parse(r.stdout) as PublishJson;
    for (const img of out.images) {
      expect(img.previous).toBe(v1[img.name]!.commit);
      expect(img.commit).toBe(v2[img.name]!.commit);
      expect(img.delta).toBeTruthy();
    }
    const deltas = await must('ostree', ['static-delta', 'list', `--repo=${path.join(pub, 'repo')}`]);
    expect(deltas.stdout).toContain(`${v1[HOST]!.commit}-${v2[HOST]!.commit}`);
    expect(await revParse(path.join(pub, 'repo'), HOST_REF)).toBe(v2[HOST]!.commit);
    await expectFsckClean(path.join(pub, 'repo'));
  });

  it('ostree admin upgrade deploys v2 through the static delta: far fewer bytes than a full pull; status lists both', async () => {
    const mark = logs.length;
    await must('ostree', ['admin', `--sysroot=${sysroot}`, 'upgrade', `--os=${HOST}`]);
    const upgrade = parseAccessLog(logs.slice(mark));
    const deltaReqs = upgrade.filter((e) => e.path.startsWith('/repo/deltas/'));
    expect(deltaReqs.length, logs.slice(mark).join('\n')).toBeGreaterThan(0);
    expect(deltaReqs.every((e) => e.status === 200)).toBe(true);
    // The delta carries the change. An upgrade sometimes also fetches one tiny loose .filez
    // (44 bytes seen; test/ci-sim.test.ts sees it too, cause not found yet): the delta must
    // still carry more bytes than every loose content object together.
    const loose = upgrade.filter((e) => e.path.endsWith('.filez'));
    expect(sumBytes(loose), loose.map((e) => e.path).join('\n')).toBeLessThan(sumBytes(deltaReqs));
    const upgradeBytes = sumBytes(upgrade);

    const mark2 = logs.length;
    const full = await freshPull(f.dir('client-full'), `${server.url}/repo`, HOST_REF, { gpgImport: key.publicKeyFile });
    expect(full.ok, full.output).toBe(true);
    expect(full.commit).toBe(v2[HOST]!.commit);
    const fullBytes = sumBytes(parseAccessLog(logs.slice(mark2)));
    expect(fullBytes).toBeGreaterThan(512 * 1024); // the incompressible blob alone
    expect(upgradeBytes * 10, `upgrade fetched ${upgradeBytes} bytes, a full pull ${fullBytes}`).toBeLessThan(fullBytes);
    console.info(`upgrade v1->v2 fetched ${upgradeBytes} bytes in ${upgrade.length} requests (${deltaReqs.length} under /repo/deltas/); a full pull of v2 ${fullBytes} bytes`);

    expect(await deployments(sysroot, HOST)).toEqual([v2[HOST]!.commit, v1[HOST]!.commit]);
    const entries = loaderEntries(sysroot);
    expect(entries.map((e) => e.deployment.split('.')[0])).toEqual([v2[HOST]!.commit, v1[HOST]!.commit]);
  });

  it('rollback: undeploy 0 makes v1 the default, and the first boot loader entry boots v1', async () => {
    await must('ostree', ['admin', `--sysroot=${sysroot}`, 'undeploy', '0']);
    expect(await deployments(sysroot, HOST)).toEqual([v1[HOST]!.commit]);
    const entries = loaderEntries(sysroot);
    // BLS: the entry with the highest version boots first.
    expect(entries[0]!.deployment).toBe(`${v1[HOST]!.commit}.0`);
    expect(entries[0]!.options.split(/\s+/)).toContain('console=ttyS0');
    expect(fs.existsSync(path.join(sysroot, 'boot', entries[0]!.linux))).toBe(true);
    expect(fs.existsSync(path.join(sysroot, 'boot', entries[0]!.initrd))).toBe(true);
  });

  it('images/<name>/latest resolves to the newest version', async () => {
    for (const name of [HOST, NETBOOT]) {
      const r = await get(`${server.url}/images/${name}/latest/MANIFEST.json`);
      expect(r.status).toBe(200);
      const m = JSON.parse(r.body.toString('utf8')) as { version: string; commit: string };
      expect(m).toMatchObject({ version: v2[name]!.version, commit: v2[name]!.commit });
      const sq = await get(`${server.url}/images/${name}/latest/rootfs.squashfs`);
      expect(sq.status).toBe(200);
      expect(sq.body.equals(fs.readFileSync(path.join(pub, 'images', name, v2[name]!.version, 'rootfs.squashfs')))).toBe(true);
    }
    // The iPXE script now boots v2.
    const ipxe = (await get(`${server.url}/boot/${NETBOOT}.ipxe`)).body.toString('utf8');
    expect(ipxe).toContain(`/images/${NETBOOT}/${v2[NETBOOT]!.version}/vmlinuz`);
  });

  it('index.json lists both versions, newest first, with package changes (empty for tree images) and downloadable artifacts', async () => {
    const res = await get(`${server.url}/index.json`);
    expect(res.status).toBe(200);
    const idx = JSON.parse(res.body.toString('utf8')) as IndexJson;
    expect(idx).toMatchObject({ url: server.url, repoUrl: `${server.url}/repo`, remote: 'treecast', signed: true, publicKey: `${server.url}/keys/treecast.asc` });
    expect(idx.images.map((i) => i.name)).toEqual([HOST, NETBOOT]);
    for (const img of idx.images) {
      expect(img.ref).toBe(img.name === HOST ? HOST_REF : NETBOOT_REF);
      expect(img.latest).toBe(v2[img.name]!.version);
      expect(img.kickstart).toBe(`${server.url}/kickstart/${img.name}.ks`);
      expect(img.ipxe).toBe(img.name === NETBOOT ? `${server.url}/boot/${NETBOOT}.ipxe` : undefined);
      expect(img.versions.map((v) => [v.version, v.commit])).toEqual([
        [v2[img.name]!.version, v2[img.name]!.commit],
        [v1[img.name]!.version, v1[img.name]!.commit],
      ]);
      const [newest, oldest] = img.versions;
      expect(newest!.changes).toEqual({ added: [], removed: [], upgraded: [] });
      expect(oldest!.changes).toBeNull();
      expect(newest!.packageCount).toBe(0);
      const manifest = JSON.parse(fs.readFileSync(path.join(pub, 'images', img.name, newest!.version, 'MANIFEST.json'), 'utf8')) as { packages: unknown[] };
      expect(manifest.packages).toEqual([]);
      const types = newest!.artifacts.map((a) => a.type).sort();
      expect(types).toEqual(img.name === HOST ? ['squashfs', 'tarball'] : ['initrd', 'ipxe', 'kernel', 'squashfs']);
      for (const a of newest!.artifacts) {
        const r = await get(a.url);
        expect(r.status, a.url).toBe(200);
        expect(r.body.length).toBe(a.size);
      }
    }
    expect(idx.images[0]!.kernelArgs).toEqual(HOST_KERNEL_ARGS);
    await expectFsckClean(path.join(pub, 'repo'));
  });

  it('unsigned publishing warns about --no-gpg-verify; its kickstart says --nogpg; a gpg-verify client refuses it', async () => {
    const pubU = f.dir('public-unsigned');
    const su = await startServer({ dir: pubU, host: '127.0.0.1', port: 0, log: () => {} });
    try {
      const r = await f.mustPublish(pubU, { url: su.url });
      expect(r.stderr).toMatch(/warning: .*unsigned.*--no-gpg-verify/);
      expect((JSON.parse(r.stdout) as PublishJson).signed).toBe(false);
      await expectFsckClean(path.join(pubU, 'repo'));
      expect(fs.existsSync(path.join(pubU, 'repo/summary.sig'))).toBe(false);

      const ks = parseKickstart((await get(`${su.url}/kickstart/${HOST}.ks`)).body.toString('utf8'));
      expect(ks.ostreesetup).toEqual({ osname: HOST, remote: 'treecast', url: `${su.url}/repo`, ref: HOST_REF, nogpg: true });

      // gpg-verify=true (commit signatures) with the key imported: no signature, refused.
      const commitOnly = await clientRepo(f.dir('client-unsigned-verify'));
      await must('ostree', [`--repo=${commitOnly}`, 'remote', 'add', `--gpg-import=${key.publicKeyFile}`, '--set=gpg-verify=true', 'origin', `${su.url}/repo`, HOST_REF]);
      const refused = await exec('ostree', [`--repo=${commitOnly}`, 'pull', 'origin', HOST_REF]);
      expect(refused.code).not.toBe(0);
      expect(refused.stderr).toMatch(/GPG verification enabled, but no signatures found/);
      expect(await revParse(commitOnly, `origin:${HOST_REF}`)).toBeUndefined();
      // ... and with summary verification as well.
      const both = await freshPull(f.dir('client-unsigned-verify-summary'), `${su.url}/repo`, HOST_REF, { gpgImport: key.publicKeyFile });
      expect(both.ok, both.output).toBe(false);
      expect(both.output).toMatch(/GPG/);
      // What the warning tells hosts to do works.
      const nogpg = await freshPull(f.dir('client-unsigned-nogpg'), `${su.url}/repo`, HOST_REF);
      expect(nogpg.ok, nogpg.output).toBe(true);
      expect(nogpg.commit).toBe(v2[HOST]!.commit);
    } finally {
      await su.close();
    }
  });

  it('two concurrent publishes serialize on the lock and both succeed', async () => {
    const pubC = f.dir('public-concurrent');
    const holders = new Set<string>();
    let polling = true;
    const poll = (async () => {
      while (polling) {
        try {
          const pid = /^pid (\d+) /.exec(fs.readFileSync(path.join(pubC, '.treecast-publish.lock'), 'utf8'))?.[1];
          if (pid) holders.add(pid);
        } catch {
          /* not held right now */
        }
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    const [a, b] = await Promise.all([f.publish(pubC, { key }), f.publish(pubC, { key })]);
    polling = false;
    await poll;
    expect(a.code, a.stderr).toBe(0);
    expect(b.code, b.stderr).toBe(0);
    // Each held the lock, one after the other: the second saw the first one's refs.
    expect([...holders].sort()).toEqual([String(a.pid), String(b.pid)].sort());
    const second = [a, b].filter((r) => /is already published/.test(r.stderr));
    expect(second, a.stderr + '\n---\n' + b.stderr).toHaveLength(1);
    expect(second[0]!.stderr).toMatch(new RegExp(`${HOST}: ${v2[HOST]!.version} is already published`));
    // The lock file stays (flock semantics), but nobody holds it any more.
    expect(spawnSync('flock', ['--nonblock', path.join(pubC, '.treecast-publish.lock'), 'true']).status).toBe(0);
    expect(await revParse(path.join(pubC, 'repo'), HOST_REF)).toBe(v2[HOST]!.commit);
    await expectFsckClean(path.join(pubC, 'repo'));
  });
});

describe('retention: keep 1', () => {
  let f: PublishFixture;
  let server: RunningServer;
  let pub: string;

  beforeAll(async () => {
    f = await PublishFixture.create('retention', { keep: 1 });
    pub = f.dir('public');
    server = await startServer({ dir: pub, host: '127.0.0.1', port: 0, log: () => {} });
    f.setConfig({ url: server.url });
    await f.commit('publish at the test server');
  });

  afterAll(async () => {
    await server?.close();
    await f?.cleanup();
  });

  it('after publishing v2 the v1 version dir and commit are gone, fsck is clean and hosts on v1 still have the delta', async () => {
    const v1 = await f.build();
    await f.mustPublish(pub);
    await expectFsckClean(path.join(pub, 'repo'));
    const clientV1 = f.dir('client-v1');
    const client = await freshPull(clientV1, `${server.url}/repo`, HOST_REF);
    expect(client.commit).toBe(v1[HOST]!.commit);

    f.editTree('etc/motd', 'treecast fixture v2\n');
    await f.commit('v2');
    const v2 = await f.build();
    await f.mustPublish(pub);
    await expectFsckClean(path.join(pub, 'repo'));
    for (const name of [HOST, NETBOOT]) {
      const dir = path.join(pub, 'images', name);
      expect(fs.readdirSync(dir).sort()).toEqual([v2[name]!.version, 'latest'].sort());
      const show = await exec('ostree', ['show', `--repo=${path.join(pub, 'repo')}`, v1[name]!.commit]);
      expect(show.code, `v1 commit of ${name} should be pruned`).not.toBe(0);
    }
    const idx = JSON.parse((await get(`${server.url}/index.json`)).body.toString('utf8')) as IndexJson;
    for (const img of idx.images) expect(img.versions.map((v) => v.version)).toEqual([v2[img.name]!.version]);
    const deltas = await must('ostree', ['static-delta', 'list', `--repo=${path.join(pub, 'repo')}`]);
    expect(deltas.stdout).toContain(`${v1[HOST]!.commit}-${v2[HOST]!.commit}`);
    // A host on v1 upgrades (through the delta) although v1 itself is pruned.
    const up = await exec('ostree', [`--repo=${clientV1}`, 'pull', 'origin', HOST_REF]);
    expect(up.code, up.stderr).toBe(0);
    expect(await revParse(clientV1, `origin:${HOST_REF}`)).toBe(v2[HOST]!.commit);
    const fresh = await freshPull(f.dir('client-v2'), `${server.url}/repo`, HOST_REF);
    expect(fresh.commit).toBe(v2[HOST]!.commit);
  });
});
