/**
 * Hosts boot what we publish (issues "Artifacts", "Hosts boot" and "Real hosts"): the
 * example Debian images are built for real (mmdebstrap), published, served on
 * 127.0.0.1, and booted under QEMU (TCG):
 *   - the diskless fleet: node1 and node2 of nodes.yaml boot their own published
 *     iPXE scripts (kernel + initrd); each initrd fetches the encrypted squashfs
 *     over HTTP (guest sees the host as 10.0.2.2), the key and its node overlay
 *     from the private tree with the node's token, and comes up with its own
 *     hostname; no published byte holds a canary file of the image;
 *   - edge-host as a real host: its published disk image (outputs.disk) boots
 *     from SeaBIOS + extlinux (no -kernel); from inside, the host upgrades
 *     itself to v2 through the static delta, boots it, rolls back, boots v1
 *     (test/helpers/disk-host.ts);
 *   - edge-host's installer tarball, installed as image-deploy does (partition,
 *     extract, bootloader), booted from the firmware;
 *   - edge-host installed from the kickstart's ostreesetup values
 *     (`treecast install-test`), and each way that must fail.
 * Every boot asserts the marker line, the commit the guest reports, and that
 * systemd reached `running` with no failed unit (the probe reports it: from
 * the initramfs it appends, or for the disk host from a test driver placed in
 * the deployment's /etc; the images carry no test hook).
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readdirSync, readlinkSync, symlinkSync, mkdtempSync, readFileSync, rmSync, writeFileSync, appendFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { simpleGit } from 'simple-git';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootDiskless } from '../compiler/boot/install-test.js';
import { bootDisk, installDriver, installerDisk, unpackDisk } from './helpers/disk-host.js';
import { startServer, type RunningServer } from '../compiler/serve/index.js';
import { BIN, PROJECT_ROOT } from './helpers/cli.js';
import { filesUnder } from './helpers/build-fixture.js';

const ARTIFACTS = path.join(PROJECT_ROOT, 'test-artifacts');
// Shared with later runs on this machine: apt downloads and cached Debian bases (CI starts empty).
const CACHE = process.env.TREECAST_TEST_CACHE ?? path.join(PROJECT_ROOT, '.treecast/test-cache');

function cli(args: string[], repo: string, timeoutMs = 1_800_000, env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [BIN, ...args, '--repo', repo], { env: { ...process.env, TREECAST_CACHE_DIR: CACHE, TREECAST_PUBLISH_DIR: pub, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => {
      stderr += d;
      appendFileSync(path.join(ARTIFACTS, 'boot-test-cli.log'), d);
    });
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

async function ok(args: string[], repo: string) {
  const r = await cli(args, repo);
  if (r.code !== 0) throw new Error(`treecast ${args.join(' ')} failed (${r.code}):\n${r.stderr.slice(-4000)}`);
  return r;
}

let work: string;
let repo: string;
let pub: string;
let priv: string;
let canary: string;
let server: RunningServer;
const access: string[] = [];
let guestUrl: string;

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  mkdirSync(CACHE, { recursive: true });
  writeFileSync(path.join(ARTIFACTS, 'boot-test-cli.log'), '');
  work = mkdtempSync(path.join(os.tmpdir(), 'treecast-boot-'));
  repo = path.join(work, 'repo');
  pub = path.join(work, 'public');
  mkdirSync(pub);
  // The project's own example repository, copied so v2 can change an overlay file.
  for (const d of ['images', 'overlays', 'files', 'nodes', 'nodes.yaml']) cpSync(path.join(PROJECT_ROOT, d), path.join(repo, d), { recursive: true, verbatimSymlinks: true });
  // A canary only the encrypted diskless image holds: no byte of the public tree may contain it.
  canary = `treecast-canary-${randomBytes(12).toString('hex')}`;
  const diskless = path.join(repo, 'images/diskless-node.yaml');
  writeFileSync(diskless, readFileSync(diskless, 'utf8').replace('files:\n', `files:\n  - { path: /etc/treecast/canary, content: "${canary}\\n", mode: "0600" }\n`));
  priv = path.join(work, 'private');
  server = await startServer({ dir: pub, privateDir: priv, port: 0, log: (l) => access.push(l) });
  guestUrl = `http://10.0.2.2:${server.port}`;
  // The publish dir is outside the repository: the operator's choice (TREECAST_PUBLISH_DIR), never treecast.yaml's.
  writeFileSync(path.join(repo, 'treecast.yaml'), `publish: { url: "${guestUrl}" }\nretention: { keep: 3 }\n`);
  const git = simpleGit(repo);
  await git.init();
  await git.addConfig('user.email', 'ci@example.com').addConfig('user.name', 'ci');
  await git.add('.').commit('v1');
  // publish.url is the guest's view (10.0.2.2), which the host cannot reach: history comes from the local publish dir.
  await ok(['build', 'edge-host', 'diskless-node', '--no-remote-history'], repo);
  await ok(['publish', 'edge-host', 'diskless-node'], repo);
}, 3_600_000);

afterAll(async () => {
  await server?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

/** What a host fetching from the public URL gets; the guest's 10.0.2.2 is the host's 127.0.0.1. */
async function fetchPublished(url: string): Promise<Buffer> {
  const res = await fetch(url.replace(guestUrl, server.url));
  if (res.status !== 200) throw new Error(`${url}: HTTP ${res.status}`);
  return Buffer.from(await res.arrayBuffer());
}

const publishedCommit = (name: string) => JSON.parse(readFileSync(path.join(pub, 'images', name, 'latest', 'MANIFEST.json'), 'utf8')).commit as string;

describe('a diskless fleet: two nodes boot one encrypted image with their own scripts, keys and overlays', () => {
  const nodes = [
    { name: 'node1', mac: '52:54:00:00:00:01' },
    { name: 'node2', mac: '52:54:00:00:00:02' },
  ];
  const token = (name: string) => readFileSync(path.join(priv, 'nodes', name, 'token'), 'utf8').trim();
  const timings: Record<string, number> = {};

  for (const node of nodes) {
    it(`${node.name} boots boot/nodes/${node.name}.ipxe: fetches the ciphertext, its key and its overlay from 127.0.0.1, reports its own hostname`, async () => {
      const ipxe = readFileSync(path.join(pub, 'boot', 'nodes', `${node.name}.ipxe`), 'utf8');
      expect(ipxe).toMatch(/root=live:http:\/\/10\.0\.2\.2:\d+\/images\/diskless-node\/[^/]+\/rootfs\.squashfs\.enc /);
      expect(ipxe).toContain('treecast.token=${treecast-token}');
      expect(ipxe, 'a token in the public boot script').not.toContain(token(node.name));
      const before = access.length;
      // The node's own iPXE holds its token (`set treecast-token ...` in its embedded script): iPXE expands it.
      const r = await bootDiskless(ipxe, fetchPublished, path.join(ARTIFACTS, `boot-${node.name}.log`), 600_000, { settings: { 'treecast-token': token(node.name) }, mac: node.mac });
      timings[node.name] = r.seconds;
      expect(r).toMatchObject({ deployment: 'live', state: 'running', failedUnits: [], hostname: node.name });
      expect(r.commit).toBe(publishedCommit('diskless-node'));
      const served = access.slice(before);
      writeFileSync(path.join(ARTIFACTS, `${node.name}-access.log`), served.join('\n'));
      // The guest itself fetched the ciphertext, its key and its overlay over HTTP.
      expect(served.some((l) => /GET \/images\/diskless-node\/[^ ]+\/rootfs\.squashfs\.enc" 200/.test(l)), served.join('\n')).toBe(true);
      expect(served.some((l) => /GET \/private\/keys\/diskless-node\/[^ ]+\/rootfs\.key" 200/.test(l)), served.join('\n')).toBe(true);
      expect(served.some((l) => new RegExp(`GET /private/nodes/${node.name}/overlay\\.tar" 200`).test(l)), served.join('\n')).toBe(true);
      console.log(`${node.name}: encrypted diskless boot to marker ${r.seconds.toFixed(1)} s`);
    }, 900_000);
  }

  it('the key and the overlays are refused (403, logged) without the node token, with another node\'s token, and the token file never', async () => {
    const version = readlinkSync(path.join(pub, 'images', 'diskless-node', 'latest'));
    const key = `${server.url}/private/keys/diskless-node/${version}/rootfs.key`;
    const get = async (url: string, tok?: string) => (await fetch(url, tok ? { headers: { authorization: `Bearer ${tok}` } } : {})).status;
    const before = access.length;
    expect(await get(key)).toBe(403);
    expect(await get(key, 'not-a-token')).toBe(403);
    expect(await get(`${server.url}/private/nodes/node2/overlay.tar`, token('node1'))).toBe(403);
    expect(await get(`${server.url}/private/nodes/node1/token`, token('node1'))).toBe(403);
    expect(await get(key, token('node1'))).toBe(200);
    const refusals = access.slice(before).filter((l) => /403/.test(l));
    expect(refusals.length, access.slice(before).join('\n')).toBeGreaterThanOrEqual(4);
  });

  it('no byte of the public tree holds the canary file of the encrypted image, nor a node token or the key', () => {
    const version = readlinkSync(path.join(pub, 'images', 'diskless-node', 'latest'));
    const keyText = readFileSync(path.join(priv, 'keys', 'diskless-node', version, 'rootfs.key'), 'utf8');
    const secrets = [canary, ...nodes.map((n) => token(n.name)), /^key=(.*)$/m.exec(keyText)![1]!];
    const files = filesUnder(pub);
    expect(files.length).toBeGreaterThan(20);
    let bytes = 0;
    for (const f of files) {
      const b = readFileSync(f);
      bytes += b.length;
      for (const secret of secrets) expect(b.includes(secret), `${f} holds a secret`).toBe(false);
    }
    // The initramfs is public and compressed: search its content too (after any uncompressed early cpio, a zstd stream).
    const initrd = readFileSync(path.join(pub, 'images', 'diskless-node', version, 'initrd.img'));
    const zstdAt = initrd.indexOf(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]));
    expect(zstdAt, 'a zstd stream in initrd.img').toBeGreaterThanOrEqual(0);
    const unpacked = spawnSync('zstd', ['-dc'], { input: initrd.subarray(zstdAt), maxBuffer: 1 << 30 });
    expect(unpacked.status, String(unpacked.stderr)).toBe(0);
    expect(unpacked.stdout.length).toBeGreaterThan(initrd.length);
    for (const secret of secrets) expect(unpacked.stdout.includes(secret), 'the initramfs holds a secret').toBe(false);
    // The plaintext exists (the guest read it): the canary is in the image, only not readable from the public tree.
    console.log(`public tree: ${files.length} files, ${bytes} bytes searched; fleet boots`, timings);
  });
});

describe('the installer tarball, installed the way image-deploy does it', () => {
  it('a blank disk, one partition, the tarball extracted, a bootloader for its /boot kernel: boots from the firmware to a healthy v1', async () => {
    const scratch = mkdtempSync(path.join(os.tmpdir(), 'treecast-installer-'));
    try {
      const dir = path.join(pub, 'images', 'edge-host', 'latest');
      const manifest = JSON.parse(readFileSync(path.join(dir, 'MANIFEST.json'), 'utf8'));
      const tarball = manifest.artifacts.find((a: { type: string }) => a.type === 'tarball');
      expect(tarball.file).toBe(`edge-host-${manifest.version}-installer.tar.zst`);
      expect(readFileSync(path.join(dir, `edge-host-${manifest.version}-MANIFEST.txt`), 'utf8')).toContain(manifest.commit);
      const raw = path.join(scratch, 'disk.raw');
      await installerDisk(path.join(dir, tarball.file), manifest.commit, raw, scratch);
      const boot = await bootDisk(raw, path.join(ARTIFACTS, 'boot-installer-tarball.log'));
      // A plain root, not an OSTree deployment: the probe says "live" and reads the commit from treecast.commit=.
      expect(boot).toMatchObject({ commit: manifest.commit, deployment: 'live', state: 'running', failedUnits: [] });
      console.log(`installer tarball: firmware boot to marker ${boot.seconds.toFixed(1)} s`);
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  }, 900_000);
});

describe('a host from the published disk image, booted by its firmware: it upgrades itself, keeps its accounts and local state, rolls back', () => {
  let scratch: string;
  let raw: string;
  const newUser = 'deployer';
  beforeAll(() => {
    scratch = mkdtempSync(path.join(os.tmpdir(), 'treecast-disk-host-'));
    raw = path.join(scratch, 'disk.raw');
  });
  afterAll(() => {
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  it('v1: the published disk.raw.zst (listed in MANIFEST.json and SHA256SUMS) boots from SeaBIOS + extlinux into v1, healthy', async () => {
    const dir = path.join(pub, 'images', 'edge-host', 'latest');
    const manifest = JSON.parse(readFileSync(path.join(dir, 'MANIFEST.json'), 'utf8'));
    const disk = manifest.artifacts.find((a: { type: string }) => a.type === 'disk');
    expect(disk).toMatchObject({ file: 'disk.raw.zst' });
    expect(readFileSync(path.join(dir, 'SHA256SUMS'), 'utf8')).toContain(`${disk.sha256}  disk.raw.zst`);
    await unpackDisk(path.join(dir, 'disk.raw.zst'), raw);
    await installDriver(raw, 'edge-host', newUser, scratch);

    // v2 is published before the first boot: one overlay file and one new user changed.
    const v1 = publishedCommit('edge-host');
    appendFileSync(path.join(repo, 'overlays/motd/etc/motd'), 'v2: one overlay file changed\n');
    const yaml = readFileSync(path.join(repo, 'images/edge-host.yaml'), 'utf8');
    writeFileSync(path.join(repo, 'images/edge-host.yaml'), yaml.replace('users:\n', `users:\n  - { name: ${newUser}, uid: 1001, gecos: Deploy bot }\n`));
    await simpleGit(repo).add('.').commit('v2');
    await ok(['build', 'edge-host', '--no-remote-history'], repo);
    const published = await ok(['publish', 'edge-host', '--json'], repo);
    const info = JSON.parse(published.stdout).images[0];
    expect(info.previous).toBe(v1);
    expect(info.delta).toBeTruthy();
    v2 = publishedCommit('edge-host');
    expect(v2).not.toBe(v1);
    v1Commit = v1;

    // Boot 1 (v1): the driver diverges /etc/passwd, writes /var and /etc, then `ostree admin upgrade` from 10.0.2.2.
    const before = access.length;
    const boot = await bootDisk(raw, path.join(ARTIFACTS, 'boot-disk-v1.log'));
    timings['boot v1 (firmware, to marker)'] = boot.seconds;
    expect(boot).toMatchObject({ commit: v1, deployment: 'ostree', state: 'running', failedUnits: [] });
    expect(boot.lines.find((l) => l.startsWith('TREECAST-UPGRADE')), boot.lines.slice(-30).join('\n')).toBe('TREECAST-UPGRADE ok');
    const fetched = access.slice(before);
    writeFileSync(path.join(ARTIFACTS, 'disk-upgrade-access.log'), fetched.join('\n'));
    // The guest fetched the static delta v1 -> v2 from the published tree.
    expect(fetched.some((l) => /"GET \/repo\/deltas\/[^"]+" 200/.test(l)), fetched.join('\n')).toBe(true);
    upgradeBytes = fetched.map((l) => Number(/" 20[06] (\d+)/.exec(l)?.[1] ?? 0)).reduce((a, b) => a + b, 0);
  }, 3_600_000);

  let v1Commit: string;
  let v2: string;
  let upgradeBytes = 0;
  const timings: Record<string, number> = {};

  it('v2: boots the upgrade; the new user exists although /etc/passwd diverged; /var and the /etc edit survive; rolls back from inside', async () => {
    const boot = await bootDisk(raw, path.join(ARTIFACTS, 'boot-disk-v2.log'));
    timings['boot v2'] = boot.seconds;
    expect(boot).toMatchObject({ commit: v2, deployment: 'ostree', state: 'running', failedUnits: [] });
    const check = boot.lines.find((l) => l.startsWith('TREECAST-CHECK'));
    expect(check, boot.lines.slice(-30).join('\n')).toBe(`TREECAST-CHECK newuser=1001 localuser=1900 var=kept etc=local_edit`);
    expect(boot.lines.find((l) => l.startsWith('TREECAST-ROLLBACK'))).toBe(`TREECAST-ROLLBACK ok ${v1Commit}`);
  }, 900_000);

  it('after the rollback the firmware boots v1 again', async () => {
    const boot = await bootDisk(raw, path.join(ARTIFACTS, 'boot-disk-rollback.log'));
    timings['boot after rollback'] = boot.seconds;
    expect(boot).toMatchObject({ commit: v1Commit, deployment: 'ostree', state: 'running', failedUnits: [] });
    writeFileSync(path.join(ARTIFACTS, 'disk-host-timings.json'), JSON.stringify({ ...timings, upgradeBytesServed: upgradeBytes }, null, 2));
    console.log('disk host:', timings, `upgrade fetched ${upgradeBytes} bytes`);
  }, 900_000);
});

/**
 * `treecast install-test` as a person runs it, then each way it must fail:
 * a clear message naming the phase, exit 1, and no scratch sysroot or disk
 * image left behind (TREECAST_TEST_TMP is where the harness makes them).
 */
describe('treecast install-test: the happy path and bad input', () => {
  let scratch: string;
  const installTest = (args: string[], env: NodeJS.ProcessEnv = {}) =>
    cli(['install-test', ...args, '--logs', ARTIFACTS], repo, 900_000, { TREECAST_TEST_TMP: scratch, ...env });
  beforeAll(() => {
    scratch = mkdtempSync(path.join(os.tmpdir(), 'treecast-install-scratch-'));
  });
  afterAll(() => {
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });
  const expectNothingLeft = () => expect(readdirSync(scratch), 'scratch sysroots left behind').toEqual([]);

  it('--kickstart --json: installs the published edge-host, boots it, reports the commit and the time per phase', async () => {
    const r = await installTest(['edge-host', '--kickstart', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ image: 'edge-host', ok: true, deployment: 'ostree', state: 'running', booted: publishedCommit('edge-host') });
    for (const k of ['init', 'pull', 'deploy', 'disk', 'boot install-test-edge-host']) expect(out.timings[k], k).toBeGreaterThan(0);
    expectNothingLeft();
  }, 900_000);

  it('a boot that never prints the marker: fails after --timeout with the last console lines, phase named', async () => {
    const r = await installTest(['edge-host', '--timeout', '3']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/install-test phase "boot install-test-edge-host": boot: no marker .* within 3 s/);
    expect(r.stderr).toContain('last console lines:');
    expect(r.stderr.split('last console lines:')[1]!.trim().split('\n').length).toBeGreaterThan(0);
    expectNothingLeft();
  }, 900_000);

  it('a ref without a kernel (the tiny tree image): the deploy phase fails and says why', async () => {
    await ok(['build', 'tiny', '--no-remote-history'], repo);
    await ok(['publish', 'tiny'], repo);
    const r = await installTest(['tiny']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/install-test phase "deploy"/);
    expect(r.stderr).toMatch(/kernel/i);
    expectNothingLeft();
  }, 300_000);

  it('a repository whose signatures do not verify (a foreign public key is published): the pull phase fails', async () => {
    const gnupg = mkdtempSync(path.join(os.tmpdir(), 'treecast-foreign-key-'));
    const keyFile = path.join(pub, 'keys', 'treecast.asc');
    try {
      const foreign = JSON.parse((await ok(['keygen', '--homedir', gnupg, '--name', 'someone else <other@example.com>', '--json'], repo)).stdout) as { publicKey: string };
      expect(foreign.publicKey).toContain('BEGIN PGP PUBLIC KEY BLOCK');
      mkdirSync(path.dirname(keyFile), { recursive: true });
      writeFileSync(keyFile, foreign.publicKey);
      const r = await installTest(['edge-host']);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/install-test phase "pull"/);
      expect(r.stderr).toMatch(/GPG|signature/i);
      expectNothingLeft();
    } finally {
      rmSync(keyFile, { force: true });
      spawn('gpgconf', ['--homedir', gnupg, '--kill', 'all']).on('close', () => rmSync(gnupg, { recursive: true, force: true }));
    }
  }, 300_000);

  it('QEMU missing: refused before any sysroot is made, naming the Debian package', async () => {
    // A PATH with every program the host side needs except QEMU.
    const bin = mkdtempSync(path.join(os.tmpdir(), 'treecast-path-'));
    try {
      for (const tool of ['ostree', 'mkfs.ext4', 'chattr', 'git']) {
        const found = ['/usr/bin', '/usr/sbin', '/bin', '/sbin'].map((d) => path.join(d, tool)).find((p) => existsSync(p));
        expect(found, tool).toBeTruthy();
        symlinkSync(found!, path.join(bin, tool));
      }
      const r = await installTest(['edge-host'], { PATH: bin });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('qemu-system-x86_64: program not found (install it: apt-get install qemu-system-x86)');
      expectNothingLeft();
    } finally {
      rmSync(bin, { recursive: true, force: true });
    }
  }, 120_000);
});
