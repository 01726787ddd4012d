/**
 * outputs.diskless.encrypt on a fixture image (test/boot.test.ts boots the
 * example's encrypted nodes under QEMU): the public tree holds ciphertext
 * only, the key is in the private tree beside it, stock `openssl enc -d`
 * opens the root with it, every build makes a new key, retention removes old
 * keys with their versions, and validation refuses anything that would
 * publish the image in the clear.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseKeyFile } from '../compiler/compile/encrypt.js';
import { startServe, stopServe } from './helpers/serve.js';
import { filesUnder, makeRepo, requireTool, sh, shellTree, squashfsList, type BuiltImage, type Fixture } from './helpers/build-fixture.js';

// Derived from a kernel image like the example diskless-node (a tree base with packages: [] may not have outputs.diskless).
const KBASE = `name: kbase
base: { source: tree, path: trees/base }
automatic-version-prefix: "1"
`;
const image = (extra = '') => `name: fleet
base: { source: image, image: kbase }
automatic-version-prefix: "1"
files:
  - { path: /etc/fleet/canary, source: canary.txt, mode: "0644" }
outputs:
  squashfs: { compression: gzip }
  diskless: { encrypt: true, kernel-args: [panic=10] }
${extra}`;

describe('outputs.diskless.encrypt: only ciphertext is public, the key is private', () => {
  let fx: Fixture;
  let pub: string;
  let priv: string;
  let env: NodeJS.ProcessEnv;
  let canary: string;
  let v1: BuiltImage;

  beforeAll(() => {
    for (const tool of ['ostree', 'mksquashfs', 'unsquashfs', 'openssl']) requireTool(tool);
    canary = `treecast-canary-${randomBytes(12).toString('hex')}`;
    fx = makeRepo({
      prefix: 'encrypted',
      files: {
        ...shellTree('trees/base'),
        // What findKernel takes for a dracut livenet initramfs (the flavor an encrypted root needs).
        'trees/base/usr/lib/dracut/modules.d/90dmsquash-live/module-setup.sh': '#!/bin/bash\n',
        'canary.txt': `${canary}\n`,
        'images/kbase.yaml': KBASE,
        'images/fleet.yaml': image(),
        'treecast.yaml': 'publish: { url: "http://10.0.2.2:8080" }\nretention: { keep: 1 }\n',
        'nodes.yaml': 'nodes:\n  - { name: n1, mac: "52:54:00:AA:00:01", image: fleet, overlays: [nodes/n1] }\n',
        'nodes/n1/etc/motd': 'node n1\n',
      },
    });
    pub = path.join(path.dirname(fx.dir), 'public');
    priv = path.join(path.dirname(fx.dir), 'private');
    env = { TREECAST_PUBLISH_DIR: pub };
    const b = fx.cli(['build', '--json', '--no-remote-history'], { env });
    expect(b.code, b.stderr).toBe(0);
    v1 = (JSON.parse(b.stdout) as { images: BuiltImage[] }).images.find((i) => i.name === 'fleet')!;
    const p = fx.cli(['publish'], { env });
    expect(p.code, p.stderr).toBe(0);
  }, 180_000);

  afterAll(() => fx?.cleanup());

  it('the build writes rootfs.squashfs.enc and no plaintext squashfs; MANIFEST.json names no packages nor files', () => {
    const files = fs.readdirSync(v1.outDir);
    expect(files).toContain('rootfs.squashfs.enc');
    expect(files).not.toContain('rootfs.squashfs');
    const m = JSON.parse(fs.readFileSync(path.join(v1.outDir, 'MANIFEST.json'), 'utf8'));
    expect(m).toMatchObject({ encrypted: true, packages: [], privateFiles: [] });
    expect(m.artifacts.map((a: { type: string }) => a.type).sort()).toEqual(['initrd', 'ipxe', 'kernel', 'squashfs-encrypted']);
  });

  it('publishes the key to private/keys/<image>/<version>/rootfs.key (0600 in 0700 dirs), never under the public tree', () => {
    const key = path.join(priv, 'keys', 'fleet', v1.version, 'rootfs.key');
    expect(fs.statSync(key).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.dirname(key)).mode & 0o777).toBe(0o700);
    expect(fs.statSync(path.join(priv, 'keys')).mode & 0o777).toBe(0o700);
    const k = parseKeyFile(fs.readFileSync(key, 'utf8'), key);
    for (const f of filesUnder(pub)) {
      const bytes = fs.readFileSync(f);
      expect(bytes.includes(k.key), `${f} holds the key`).toBe(false);
      expect(bytes.includes(Buffer.from(k.key, 'hex')), `${f} holds the raw key`).toBe(false);
    }
  });

  it('no published byte holds the canary; the commit, a ref and a kickstart of the image are not published', () => {
    const all = filesUnder(pub);
    expect(all.length).toBeGreaterThan(5);
    const hits = all.filter((f) => fs.readFileSync(f).includes(canary));
    expect(hits, 'published files holding the canary').toEqual([]);
    expect(fs.existsSync(path.join(pub, 'images', 'fleet', v1.version, 'rootfs.squashfs.enc'))).toBe(true);
    const refs = sh('ostree', ['refs', `--repo=${path.join(pub, 'repo')}`]);
    expect(refs).not.toContain('fleet');
    const show = fs.existsSync(path.join(pub, 'repo', 'objects', v1.commit.slice(0, 2), `${v1.commit.slice(2)}.commit`));
    expect(show, 'the commit object is in the public repo').toBe(false);
    expect(fs.existsSync(path.join(pub, 'kickstart', 'fleet.ks'))).toBe(false);
    const index = JSON.parse(fs.readFileSync(path.join(pub, 'index.json'), 'utf8'));
    const entry = index.images.find((i: { name: string }) => i.name === 'fleet');
    expect(entry.versions.map((v: { version: string }) => v.version)).toEqual([v1.version]);
    expect(entry.versions[0]).toMatchObject({ encrypted: true, packageCount: 0, privateFileCount: 0 });
    // No kickstart to point at: the commit is not published.
    expect(entry.kickstart).toBeUndefined();
    expect(fs.readFileSync(path.join(pub, 'index.html'), 'utf8')).toContain('encrypted root: its files are not listed');
  });

  it('the boot script fetches the ciphertext and names the private key URL and the node token setting, not a token', () => {
    const ipxe = fs.readFileSync(path.join(pub, 'boot', 'fleet.ipxe'), 'utf8');
    expect(ipxe).toMatch(new RegExp(`root=live:http://10\\.0\\.2\\.2:8080/images/fleet/${v1.version.replace(/\./g, '\\.')}/rootfs\\.squashfs\\.enc `));
    expect(ipxe).toContain(`treecast.key=http://10.0.2.2:8080/private/keys/fleet/${v1.version}/rootfs.key`);
    expect(ipxe).toContain('treecast.token=${treecast-token}');
  });

  it('stock openssl opens the ciphertext with the private key file; the plaintext matches its sha256 and holds the canary', () => {
    const k = parseKeyFile(fs.readFileSync(path.join(priv, 'keys', 'fleet', v1.version, 'rootfs.key'), 'utf8'), 'key');
    const plain = path.join(path.dirname(fx.dir), 'decrypted.squashfs');
    sh('openssl', ['enc', '-d', '-aes-256-ctr', '-K', k.key, '-iv', k.iv, '-in', path.join(pub, 'images', 'fleet', v1.version, 'rootfs.squashfs.enc'), '-out', plain]);
    expect(fs.statSync(plain).size).toBe(k.size);
    expect(sh('sha256sum', [plain]).split(' ')[0]).toBe(k.sha256);
    expect(squashfsList(plain).has('/etc/fleet/canary')).toBe(true);
    const out = path.join(path.dirname(fx.dir), 'unsq');
    sh('unsquashfs', ['-q', '-d', out, plain, '/etc/fleet/canary']);
    expect(fs.readFileSync(path.join(out, 'etc/fleet/canary'), 'utf8')).toBe(`${canary}\n`);
  });

  it('a new build gets a new key; retention removes the old version and its key together', () => {
    const oldKey = fs.readFileSync(path.join(priv, 'keys', 'fleet', v1.version, 'rootfs.key'), 'utf8');
    fx.write('canary.txt', `${canary} v2\n`);
    fx.commit('v2');
    const b = fx.cli(['build', '--json', '--no-remote-history'], { env });
    expect(b.code, b.stderr).toBe(0);
    const v2 = (JSON.parse(b.stdout) as { images: BuiltImage[] }).images.find((i) => i.name === 'fleet')!;
    expect(v2.version).not.toBe(v1.version);
    const p = fx.cli(['publish'], { env });
    expect(p.code, p.stderr).toBe(0);
    const newKey = parseKeyFile(fs.readFileSync(path.join(priv, 'keys', 'fleet', v2.version, 'rootfs.key'), 'utf8'), 'v2 key');
    expect(newKey.key).not.toBe(parseKeyFile(oldKey, 'v1 key').key);
    expect(fs.existsSync(path.join(pub, 'images', 'fleet', v1.version))).toBe(false);
    expect(fs.existsSync(path.join(priv, 'keys', 'fleet', v1.version))).toBe(false);
    expect(fs.readlinkSync(path.join(pub, 'images', 'fleet', 'latest'))).toBe(v2.version);
  });

  it('the node script asks for the token once, next to the key and the node overlay; `treecast nodes` shows and rotates tokens', () => {
    const ipxe = fs.readFileSync(path.join(pub, 'boot', 'nodes', 'n1.ipxe'), 'utf8');
    expect(ipxe.match(/treecast\.token=\$\{treecast-token\}/g)).toHaveLength(1);
    expect(ipxe).toContain('treecast.key=http://10.0.2.2:8080/private/keys/fleet/');
    expect(ipxe).toContain('treecast.node=n1 treecast.node-overlay=http://10.0.2.2:8080/private/nodes/n1/overlay.tar');
    expect(fs.readFileSync(path.join(pub, 'boot', 'mac', '52-54-00-aa-00-01.ipxe'), 'utf8')).toBe(ipxe);
    const list = fx.cli(['nodes', '--json'], { env });
    expect(list.code, list.stderr).toBe(0);
    const rows = JSON.parse(list.stdout) as { name: string; token: string; tokenFile: string }[];
    expect(rows).toMatchObject([{ name: 'n1', token: 'served', tokenFile: path.join(priv, 'nodes', 'n1', 'token') }]);
    const before = fs.readFileSync(rows[0]!.tokenFile, 'utf8');
    const rotated = fx.cli(['nodes', '--rotate', 'n1'], { env });
    expect(rotated.code, rotated.stderr).toBe(0);
    expect(rotated.stdout).toContain('new token(s) for n1');
    const after = fs.readFileSync(rows[0]!.tokenFile, 'utf8');
    expect(after).not.toBe(before);
    expect(JSON.parse(fx.cli(['nodes', '--json'], { env }).stdout)[0].token).toBe('served');
    const bad = fx.cli(['nodes', '--rotate', 'n9'], { env });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('no node named "n9" in nodes.yaml');
  });

  it('publish --to carries the private tree beside DEST; a fresh runner brings it down and keeps the fleet\'s tokens', () => {
    const base = path.dirname(fx.dir);
    const dest = path.join(base, 'server', 'public');
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    const up = fx.cli(['publish', '--to', dest], { env });
    expect(up.code, up.stderr).toBe(0);
    const version = fs.readlinkSync(path.join(dest, 'images', 'fleet', 'latest'));
    const key = path.join(base, 'server', 'private', 'keys', 'fleet', version, 'rootfs.key');
    expect(fs.statSync(key).mode & 0o777).toBe(0o600);
    expect(fs.readFileSync(key, 'utf8')).toBe(fs.readFileSync(path.join(priv, 'keys', 'fleet', version, 'rootfs.key'), 'utf8'));
    const token = fs.readFileSync(path.join(priv, 'nodes', 'n1', 'token'), 'utf8');
    expect(fs.readFileSync(path.join(base, 'server', 'private', 'nodes', 'n1', 'token'), 'utf8')).toBe(token);
    // No byte of the private tree went into the public one at DEST.
    for (const f of filesUnder(dest)) expect(fs.readFileSync(f).includes(token.trim()), f).toBe(false);
    // A fresh runner (empty publish and private dirs) publishing to the same DEST keeps the token the nodes hold.
    const runner = { TREECAST_PUBLISH_DIR: path.join(base, 'runner2', 'public') };
    const again = fx.cli(['publish', '--to', dest], { env: runner });
    expect(again.code, again.stderr).toBe(0);
    expect(fs.readFileSync(path.join(base, 'runner2', 'private', 'nodes', 'n1', 'token'), 'utf8')).toBe(token);
    expect(fs.readFileSync(path.join(base, 'server', 'private', 'nodes', 'n1', 'token'), 'utf8')).toBe(token);
  });

  it('a fresh CI cache continues an encrypted image from the published tree (no ref there): up to date, then N+1', async () => {
    // A separate process: the CLI runs with spawnSync, which would block an in-process server.
    const server = await startServe(pub, path.join(path.dirname(fx.dir), 'serve.log'));
    try {
      const config = fs.readFileSync(path.join(fx.dir, 'treecast.yaml'), 'utf8');
      fx.write('treecast.yaml', config.replace('http://10.0.2.2:8080', server.url));
      fx.commit('publish.url: the test server');
      const latest = fs.readlinkSync(path.join(pub, 'images', 'fleet', 'latest'));
      const published = JSON.parse(fs.readFileSync(path.join(pub, 'images', 'fleet', latest, 'MANIFEST.json'), 'utf8'));
      // A fresh cache, no publish dir: what a CI build job has.
      const job = { TREECAST_PUBLISH_DIR: path.join(path.dirname(fx.dir), 'job', 'public') };
      const same = fx.cli(['build', 'fleet', '--json'], { cacheDir: fx.newCacheDir(), env: job });
      expect(same.code, same.stderr).toBe(0);
      const s1 = (JSON.parse(same.stdout) as { images: (BuiltImage & { upToDate?: string })[] }).images.find((i) => i.name === 'fleet')!;
      expect(s1).toMatchObject({ upToDate: 'published', version: published.version, commit: published.commit });
      expect(same.stderr).toMatch(/1 of them encrypted images, from index\.json/);
      fx.write('canary.txt', `${canary} v3\n`);
      fx.commit('v3');
      const next = fx.cli(['build', 'fleet', '--json'], { cacheDir: fx.newCacheDir(), env: job });
      expect(next.code, next.stderr).toBe(0);
      const s2 = (JSON.parse(next.stdout) as { images: BuiltImage[] }).images.find((i) => i.name === 'fleet')!;
      expect(s2.version).not.toBe(published.version);
      expect(s2.version.split('.').map(Number).at(-1)).toBe(Number(published.version.split('.').at(-1)) + 1);
    } finally {
      await stopServe(server);
    }
  });

  it('validation refuses every other output and streams of an encrypted image, located and quoted', () => {
    fx.write('images/fleet.yaml', image('streams:\n  testing: {}\n').replace('outputs:\n', 'outputs:\n  tarball: { compression: zstd }\n  ostree: { bootable: false }\n'));
    const r = fx.cli(['validate']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/images\/fleet\.yaml:\d+:\d+.*"tarball" would publish its content unencrypted/);
    expect(r.stderr).toMatch(/images\/fleet\.yaml:\d+:\d+.*"ostree" would publish its content unencrypted/);
    expect(r.stderr).toMatch(/images\/fleet\.yaml:\d+:\d+.*cannot have release streams/);
    fx.write('images/fleet.yaml', image());
  });
});
