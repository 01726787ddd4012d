/**
 * Issue #14: outputs.tarball.layout: installer writes a tarball Digital Rebar
 * image-deploy (curtin) can install: a conventional root (kernel in /boot,
 * real /etc, /var with its content, /home & co. as directories, /curtin, no
 * /ostree or /sysroot) with a text MANIFEST beside it, listed in MANIFEST.json
 * and SHA256SUMS, byte-identical across builds; and links an image plants at
 * the places the transform rewrites never lead it out of its copy.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toInstallerLayout } from '../compiler/outputs/installer-layout.js';
import { tarballFile } from '../compiler/outputs/tarball.js';
import type { ImageManifest } from '../compiler/manifest/types.js';
import {
  asSorted, deployedLayout, makeRepo, ostreeLs, requireTool, sh, shellTree, tarList,
  type BuiltImage, type Entry, type Fixture, type Listing,
} from './helpers/build-fixture.js';

const KVER = '6.1.0-test';

const INST = `name: inst
base: { source: tree, path: trees/base }
automatic-version-prefix: "2"
files:
  - { path: /etc/web/secret, content: "token\\n", mode: "0600", owner: web, group: web }
  - { path: /usr/bin/su-helper, content: "#!/bin/sh\\n", mode: "4755", owner: root, group: root }
  - { path: /opt/tool/run, content: "#!/bin/sh\\n", mode: "0750", owner: root, group: 1500 }
groups: [{ name: web, gid: 3000 }]
users: [{ name: web, uid: 3000, group: web, ssh-authorized-keys: ["ssh-ed25519 AAAAC3Nza web@test"] }]
outputs:
  tarball: { compression: gzip, layout: installer }
`;

/** Links to a host directory where the transform removes, creates and moves things. */
const hostileYaml = (outside: string) => `name: evil
base: { source: tree, path: trees/base }
automatic-version-prefix: "1"
postprocess:
  - "busybox ln -s '${outside}/curtin' /curtin"
  - "rm -rf /home && busybox ln -s '${outside}/home' /home"
  - "busybox ln -s '${outside}/ostree' /ostree"
  - "mkdir -p /var/cache && busybox ln -s '${outside}/cache' /var/cache/link"
outputs:
  tarball: { compression: zstd, layout: installer }
`;

/** Where the installer layout puts what the deployed layout has at `p` (the mapping, written out independently of the code). */
const VAR_DIRS: [string, string][] = [['/var/home', '/home'], ['/var/roothome', '/root'], ['/var/opt', '/opt'], ['/var/srv', '/srv'], ['/var/mnt', '/mnt'], ['/var/usrlocal', '/usr/local']];
function installerPath(p: string): string | undefined {
  if (p === '/ostree' || p === '/sysroot' || p.startsWith('/sysroot/')) return undefined;
  if (p === '/usr/lib/tmpfiles.d/treecast-var.conf' || p === '/usr/share/factory' || p === '/usr/share/factory/var') return undefined;
  if (p === `/usr/lib/modules/${KVER}/vmlinuz`) return `/boot/vmlinuz-${KVER}`;
  if (p === `/usr/lib/modules/${KVER}/initramfs.img`) return `/boot/initrd.img-${KVER}`;
  if (p.startsWith('/usr/share/factory/var/')) {
    const v = p.slice('/usr/share/factory'.length);
    for (const [from, to] of VAR_DIRS) if (v === from || v.startsWith(`${from}/`)) return to + v.slice(from.length);
    return v;
  }
  return p;
}

function expectedInstaller(deployed: Listing): Listing {
  const out: Listing = new Map();
  for (const [p, e] of deployed) {
    const q = installerPath(p);
    if (q !== undefined && !(e.type === 'l' && VAR_DIRS.some(([, to]) => to === q))) out.set(q, e);
  }
  const root: Entry = { type: 'd', mode: 0o755, uid: 0, gid: 0 };
  for (const [, to] of VAR_DIRS) if (!out.has(to)) out.set(to, to === '/root' ? { ...root, mode: 0o700 } : root);
  out.set('/curtin', root);
  if (!out.has('/boot')) out.set('/boot', root);
  out.set('/vmlinuz', { type: 'l', mode: 0o777, uid: 0, gid: 0, target: `boot/vmlinuz-${KVER}` });
  out.set('/initrd.img', { type: 'l', mode: 0o777, uid: 0, gid: 0, target: `boot/initrd.img-${KVER}` });
  return out;
}

/** Every entry below `dir` as the listings show it (for a tarball extracted by tar). */
function dirListing(dir: string): Listing {
  const out: Listing = new Map();
  const walk = (rel: string) => {
    const abs = path.join(dir, rel);
    const st = fs.lstatSync(abs);
    const e: Entry = { type: st.isDirectory() ? 'd' : st.isSymbolicLink() ? 'l' : 'f', mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
    if (e.type === 'f') e.size = st.size;
    if (e.type === 'l') e.target = fs.readlinkSync(abs);
    out.set(rel === '' ? '/' : `/${rel}`, e);
    if (st.isDirectory()) for (const n of fs.readdirSync(abs).sort()) walk(rel ? `${rel}/${n}` : n);
  };
  walk('');
  return out;
}

const normalize = (l: Listing) => asSorted(new Map([...l].map(([p, e]) => [p, e.type === 'l' ? { ...e, mode: 0o777 } : e])));

describe('tarball layout: installer', () => {
  let fx: Fixture;
  let inst: BuiltImage;
  let evil: BuiltImage;
  let again: BuiltImage;
  let outside: string;
  let expected: Listing;
  const art = (img: BuiltImage, type: string) => img.artifacts.find((a) => a.type === type)!;

  beforeAll(() => {
    for (const tool of ['ostree', 'tar', 'gzip', 'zstd', 'cp', 'git', 'bwrap']) requireTool(tool);
    fx = makeRepo({
      prefix: 'installer',
      files: {
        ...shellTree('trees/base'),
        ...shellTree('trees/nokernel', { kernel: false }),
        'images/inst.yaml': INST,
        'images/nok.yaml': 'name: nok\nbase: { source: tree, path: trees/nokernel }\noutputs:\n  tarball: { layout: installer }\n',
      },
    });
    outside = path.join(path.dirname(fx.dir), 'outside');
    for (const d of ['curtin', 'home', 'ostree', 'cache']) fs.mkdirSync(path.join(outside, d), { recursive: true });
    fs.writeFileSync(path.join(outside, 'home/sentinel'), 'host\n');
    fx.write('images/evil.yaml', hostileYaml(outside));
    fx.commit('hostile image');
    const built = fx.build(['inst', 'evil']);
    inst = built.find((i) => i.name === 'inst')!;
    evil = built.find((i) => i.name === 'evil')!;
    again = fx.build(['inst'], { cacheDir: fx.newCacheDir() })[0]!;
    expected = expectedInstaller(deployedLayout(ostreeLs(fx.ostreeRepo, inst.commit)));
  }, 60_000);
  afterAll(() => fx?.cleanup());

  it('names the tarball for image-deploy and writes the MANIFEST beside it; MANIFEST.json and SHA256SUMS list both', () => {
    const files = [`inst-${inst.version}-MANIFEST.txt`, `inst-${inst.version}-installer.tgz`];
    expect(inst.artifacts.map((a) => [a.type, path.basename(a.path)]).sort()).toEqual([['tarball', files[1]], ['tarball-manifest', files[0]]]);
    expect(fs.readdirSync(inst.outDir).sort()).toEqual(['MANIFEST.json', 'SHA256SUMS', ...files]);
    const sums = fs.readFileSync(path.join(inst.outDir, 'SHA256SUMS'), 'utf8');
    expect(sh('sha256sum', ['--check', '--strict', 'SHA256SUMS'], { cwd: inst.outDir })).toMatch(/installer\.tgz: OK[\s\S]*MANIFEST\.txt: OK|MANIFEST\.txt: OK[\s\S]*installer\.tgz: OK/);
    expect(sums.trim().split('\n')).toHaveLength(2);
    const m = JSON.parse(fs.readFileSync(path.join(inst.outDir, 'MANIFEST.json'), 'utf8')) as { artifacts: { file: string; type: string; sha256: string }[] };
    expect(m.artifacts.map((a) => a.file).sort()).toEqual(files);
    for (const a of m.artifacts) expect(a.sha256).toBe(inst.artifacts.find((x) => path.basename(x.path) === a.file)!.sha256);
  });

  it('publish copies both into images/<name>/<version>/ and index.json lists both with their checksums', () => {
    const pub = path.join(path.dirname(fx.dir), 'published');
    fs.mkdirSync(pub);
    const r = fx.cli(['publish', 'inst', '--dir', pub, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const vdir = path.join(pub, 'images/inst', inst.version);
    for (const a of inst.artifacts) expect(fs.readFileSync(path.join(vdir, path.basename(a.path))).equals(fs.readFileSync(a.path))).toBe(true);
    const index = JSON.parse(fs.readFileSync(path.join(pub, 'index.json'), 'utf8')) as { images: { name: string; versions: { version: string; artifacts: { type: string; file: string; sha256: string }[] }[] }[] };
    const v = index.images.find((i) => i.name === 'inst')!.versions.find((x) => x.version === inst.version)!;
    expect(v.artifacts.map((a) => [a.type, a.file, a.sha256]).sort()).toEqual(inst.artifacts.map((a) => [a.type, path.basename(a.path), a.sha256]).sort());
  });

  it('the tarball holds the conventional root: listing equals the commit mapped to the installer layout', () => {
    const tgz = art(inst, 'tarball').path;
    const listed = tarList(tgz);
    expect(normalize(listed)).toEqual(normalize(expected));
    expect(listed.get(`/boot/vmlinuz-${KVER}`)).toMatchObject({ type: 'f', mode: 0o644, uid: 0, gid: 0 });
    expect(listed.get(`/boot/initrd.img-${KVER}`)).toMatchObject({ type: 'f' });
    expect(listed.get('/vmlinuz')).toMatchObject({ type: 'l', target: `boot/vmlinuz-${KVER}` });
    expect(listed.get('/etc/passwd')).toMatchObject({ type: 'f' });
    expect(listed.get('/etc/web/secret')).toMatchObject({ type: 'f', mode: 0o600, uid: 3000, gid: 3000 });
    expect(listed.get('/curtin')).toMatchObject({ type: 'd', mode: 0o755, uid: 0, gid: 0 });
    expect(listed.get('/var/log/fixture.log')).toMatchObject({ type: 'f' });
    expect(listed.get('/var/lib/dpkg/status')).toMatchObject({ type: 'f' });
    expect(listed.get('/home/web/.ssh/authorized_keys')).toMatchObject({ type: 'f', mode: 0o600, uid: 3000, gid: 3000 });
    expect(listed.get('/root/.profile')).toMatchObject({ type: 'f', mode: 0o600 });
    expect(listed.get('/srv/appdata/.keep')).toMatchObject({ type: 'f' });
    expect(listed.get('/opt/tool/run')).toMatchObject({ type: 'f', mode: 0o750, uid: 0, gid: 1500 });
    for (const d of ['/home', '/root', '/opt', '/srv', '/mnt', '/usr/local', '/var', '/etc', '/boot']) expect(listed.get(d)?.type, d).toBe('d');
    for (const gone of ['/usr/etc', '/ostree', '/sysroot', '/usr/share/factory/var', '/usr/lib/tmpfiles.d/treecast-var.conf', `/usr/lib/modules/${KVER}/vmlinuz`]) expect(listed.has(gone), gone).toBe(false);
  });

  it('extracted by tar as root, modes, owners and setuid bits are exactly the listing', () => {
    const dest = path.join(path.dirname(fx.dir), 'extracted');
    fs.mkdirSync(dest);
    try {
      sh('tar', ['--extract', '--same-permissions', '--same-owner', '--numeric-owner', '--xattrs', '--file', art(inst, 'tarball').path, '--directory', dest]);
      const got = dirListing(dest);
      expect(normalize(got)).toEqual(normalize(expected));
      expect(got.get('/usr/bin/su-helper')).toMatchObject({ mode: 0o4755, uid: 0, gid: 0 });
      expect(fs.readFileSync(path.join(dest, 'vmlinuz'), 'utf8')).toBe('fixture kernel image, not bootable\n');
    } finally {
      fs.rmSync(dest, { recursive: true, force: true });
    }
  });

  it('MANIFEST text: image, version, commit, kernel, checksum and the installed packages', () => {
    const text = fs.readFileSync(art(inst, 'tarball-manifest').path, 'utf8');
    const tgz = art(inst, 'tarball');
    expect(text).toBe(
      [
        'image: inst',
        `version: ${inst.version}`,
        `commit: ${inst.commit}`,
        'build-time: 2024-01-01T00:00:00.000Z',
        `kernel: ${KVER}`,
        'layout: installer',
        `tarball: inst-${inst.version}-installer.tgz`,
        'compression: gzip',
        'image-type: tgz',
        `size: ${tgz.size}`,
        `sha256: ${tgz.sha256}`,
        'packages: 2',
        '  busybox-static 1:1.35.0-4+b3 amd64',
        '  fixture-base 1.0 all',
        '',
      ].join('\n'),
    );
  });

  it('two builds from clean caches give byte-identical tarballs and MANIFESTs', () => {
    expect(again.commit).toBe(inst.commit);
    for (const type of ['tarball', 'tarball-manifest']) {
      expect(art(again, type).sha256).toBe(art(inst, type).sha256);
      expect(fs.readFileSync(art(again, type).path).equals(fs.readFileSync(art(inst, type).path))).toBe(true);
    }
  });

  it('links planted by postprocess at /curtin, /home and /ostree are replaced, never written through; the host dirs are untouched', () => {
    // The commit does carry the links (finalize leaves an image's own /home or /ostree link in place).
    const commit = ostreeLs(fx.ostreeRepo, evil.commit);
    for (const d of ['curtin', 'home', 'ostree']) expect(commit.get(`/${d}`), d).toMatchObject({ type: 'l', target: `${outside}/${d}` });
    const listed = tarList(art(evil, 'tarball').path);
    expect(listed.get('/curtin')).toMatchObject({ type: 'd', mode: 0o755 });
    expect(listed.get('/home')).toMatchObject({ type: 'd', mode: 0o755 });
    expect(listed.has('/ostree')).toBe(false);
    expect(listed.get('/var/cache/link')).toMatchObject({ type: 'l', target: `${outside}/cache` });
    expect(fs.readdirSync(outside).sort()).toEqual(['cache', 'curtin', 'home', 'ostree']);
    for (const d of ['cache', 'curtin', 'ostree']) expect(fs.readdirSync(path.join(outside, d)), d).toEqual([]);
    expect(fs.readdirSync(path.join(outside, 'home'))).toEqual(['sentinel']);
  });

  it('file names: the image-deploy suffixes for the installer layout, rootfs.<ext> otherwise', () => {
    const m = (tarball: NonNullable<ImageManifest['outputs']>['tarball']) => ({ name: 'web', base: { source: 'tree', path: 't' }, outputs: { tarball } }) as ImageManifest;
    expect(tarballFile(m({ layout: 'installer' }), '3.4')).toBe('web-3.4-installer.tar.zst');
    expect(tarballFile(m({ layout: 'installer', compression: 'gzip' }), '3.4')).toBe('web-3.4-installer.tgz');
    expect(tarballFile(m({ layout: 'installer', compression: 'xz' }), '3.4')).toBe('web-3.4-installer.txz');
    expect(tarballFile(m({ layout: 'installer', compression: 'none' }), '3.4')).toBe('web-3.4-installer.tar');
    expect(tarballFile(m({ layout: 'ostree', compression: 'xz' }), '3.4')).toBe('rootfs.tar.xz');
    expect(path.basename(art(evil, 'tarball').path)).toBe(`evil-${evil.version}-installer.tar.zst`);
  });

  it('an image without a kernel: the installer layout is refused, naming the image and what to add', () => {
    const r = fx.cli(['build', 'nok']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('outputs.tarball.layout "installer" of image nok needs a kernel and an initramfs in /usr/lib/modules/<version>/');
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it('a checkout whose /usr/etc, /boot and factory /var are links to the host: the transform stays inside it', () => {
    const base = fs.mkdtempSync(path.join(path.dirname(fx.dir), 'direct-'));
    const root = path.join(base, 'root');
    const host = path.join(base, 'host');
    for (const d of ['etc', 'boot', 'var', 'factory']) fs.mkdirSync(path.join(host, d), { recursive: true });
    fs.writeFileSync(path.join(host, 'etc/passwd'), 'host passwd\n');
    fs.writeFileSync(path.join(host, 'factory/secret'), 'host secret\n');
    fs.mkdirSync(path.join(root, `usr/lib/modules/${KVER}`), { recursive: true });
    fs.writeFileSync(path.join(root, `usr/lib/modules/${KVER}/vmlinuz`), 'k\n');
    fs.writeFileSync(path.join(root, `usr/lib/modules/${KVER}/initramfs.img`), 'i\n');
    fs.mkdirSync(path.join(root, 'etc'));
    fs.mkdirSync(path.join(root, 'usr/share/factory'), { recursive: true });
    fs.symlinkSync(path.join(host, 'etc'), path.join(root, 'usr/etc'));
    fs.symlinkSync(path.join(host, 'boot'), path.join(root, 'boot'));
    fs.symlinkSync(path.join(host, 'var'), path.join(root, 'var'));
    fs.symlinkSync(path.join(host, 'factory'), path.join(root, 'usr/share/factory/var'));
    const before = sh('find', [host, '-printf', '%p %m %s\n']);
    try {
      toInstallerLayout(root, { version: KVER, vmlinuz: `/usr/lib/modules/${KVER}/vmlinuz`, initramfs: `/usr/lib/modules/${KVER}/initramfs.img`, flavor: 'unknown' });
      expect(sh('find', [host, '-printf', '%p %m %s\n'])).toBe(before);
      expect(fs.lstatSync(path.join(root, 'boot')).isDirectory()).toBe(true);
      expect(fs.readFileSync(path.join(root, `boot/vmlinuz-${KVER}`), 'utf8')).toBe('k\n');
      expect(fs.lstatSync(path.join(root, 'var')).isDirectory()).toBe(true);
      expect(fs.readdirSync(path.join(root, 'var'))).toEqual([]);
      expect(fs.existsSync(path.join(root, 'usr/etc'))).toBe(false);
      expect(fs.existsSync(path.join(root, 'usr/share/factory/var'))).toBe(false);
    } finally {
      fs.rmSync(base, { recursive: true, force: true });
    }
  });
});
