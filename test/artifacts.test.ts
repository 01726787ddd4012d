/**
 * Issue "Artifacts": squashfs, tarball (zstd and gzip .tgz) and erofs written
 * from a built commit hold exactly the commit's tree in the deployed layout
 * (/usr/etc at /etc) — names, types, modes, owners, link targets, sizes —
 * with a MANIFEST.json and SHA256SUMS that verify, byte-identical across
 * builds from clean caches; outputs that cannot be made are refused at
 * validation, with the place in the manifest.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { STACK_TRACE } from './helpers/cli.js';
import {
  asSorted,
  deployedLayout,
  FIXTURE_EPOCH,
  makeRepo,
  ostreeLs,
  requireTool,
  revParse,
  sh,
  shellTree,
  squashfsList,
  tarList,
  tmpEntries,
  type BuiltImage,
  type Entry,
  type Fixture,
  type Listing,
} from './helpers/build-fixture.js';

const fileSha = (p: string) => createHash('sha256').update(fs.readFileSync(p)).digest('hex');

const ARTS = `name: arts
base: { source: tree, path: trees/base }
automatic-version-prefix: "3"
overlays: [overlays/web]
files:
  - { path: /usr/bin/su-helper, content: "#!/bin/sh\\n", mode: "4755", owner: root, group: root }
  - { path: /etc/web/secret, content: "token\\n", mode: "0600", owner: web, group: web }
  - { path: /etc/numeric, content: "n\\n", mode: "0640", owner: 4321, group: 8765 }
  - { path: /usr/bin/vi, symlink: busybox }
groups: [{ name: web, gid: 3000 }]
users: [{ name: web, uid: 3000, group: web, ssh-authorized-keys: ["ssh-ed25519 AAAAC3Nza web@test"] }]
metadata: { tier: test }
outputs:
  ostree: {}
  squashfs: { compression: zstd, compression-level: 15 }
  tarball: { compression: zstd }
  erofs: {}
`;

const TGZ = `name: drp
base: { source: tree, path: trees/base }
automatic-version-prefix: "1"
files:
  - { path: /usr/bin/ping-helper, content: "#!/bin/sh\\n", mode: "4750", owner: root, group: 1500 }
outputs:
  tarball: { compression: gzip }
  squashfs: { compression: gzip }
`;

/** Every entry below `dir` (for an extracted erofs), like the other listings. */
function dirListing(dir: string): Listing {
  const out: Listing = new Map();
  const walk = (rel: string) => {
    const abs = path.join(dir, rel);
    const st = fs.lstatSync(abs);
    const p = rel === '' ? '/' : `/${rel}`;
    const e: Entry = {
      type: st.isDirectory() ? 'd' : st.isSymbolicLink() ? 'l' : st.isFile() ? 'f' : (() => { throw new Error(`special file ${p} in the erofs image`); })(),
      mode: st.mode & 0o7777,
      uid: st.uid,
      gid: st.gid,
    };
    if (e.type === 'f') e.size = st.size;
    if (e.type === 'l') e.target = fs.readlinkSync(abs);
    out.set(p, e);
    if (st.isDirectory()) for (const n of fs.readdirSync(abs).sort()) walk(rel ? `${rel}/${n}` : n);
  };
  walk('');
  return out;
}

/** Symlink modes are 0777 everywhere; some listings print them differently, so compare them without it. */
const normalize = (l: Listing) => {
  const out: Listing = new Map();
  for (const [p, e] of l) out.set(p, e.type === 'l' ? { ...e, mode: 0o777 } : e);
  return asSorted(out);
};

describe('artifacts of tree-based images', () => {
  let fx: Fixture;
  let head: string;
  let arts: BuiltImage;
  let drp: BuiltImage;
  let expected: Listing;
  let expectedDrp: Listing;
  const artifact = (img: BuiltImage, type: string) => {
    const a = img.artifacts.find((x) => x.type === type);
    expect(a, `${img.name} has a ${type} artifact`).toBeDefined();
    return a!;
  };

  beforeAll(() => {
    for (const tool of ['ostree', 'mksquashfs', 'unsquashfs', 'tar', 'zstd', 'gzip', 'mkfs.erofs', 'mount', 'sha256sum', 'git', 'bwrap']) requireTool(tool);
    fx = makeRepo({
      prefix: 'artifacts',
      files: {
        ...shellTree('trees/base'),
        'overlays/web/etc/web/site.conf': 'root /srv/www\n',
        'overlays/web/etc/web/current': { symlink: 'site.conf' },
        'overlays/web/etc/web/outside': { symlink: '../../../../etc/shadow' },
        'overlays/web/usr/lib/web/start': { content: '#!/bin/sh\n', mode: 0o750 },
        // Equal content and metadata: one repository object, so one inode (two links) in the hardlink
        // checkout the outputs read; the artifacts must still hold two separate files, like the commit.
        'overlays/web/usr/share/web/a.txt': 'the same bytes\n',
        'overlays/web/usr/share/web/b.txt': 'the same bytes\n',
        'images/arts.yaml': ARTS,
        'images/drp.yaml': TGZ,
      },
    });
    head = fx.head();
    const images = fx.build();
    arts = images.find((i) => i.name === 'arts')!;
    drp = images.find((i) => i.name === 'drp')!;
    expected = deployedLayout(ostreeLs(fx.ostreeRepo, arts.commit));
    expectedDrp = deployedLayout(ostreeLs(fx.ostreeRepo, drp.commit));
  });
  afterAll(() => fx?.cleanup());

  it('writes the asked-for artifacts into <cache>/out/<name>/<version>/', () => {
    expect(arts.outDir).toBe(path.join(fx.cacheDir, 'out/arts/3.1'));
    expect(arts.artifacts.map((a) => [a.type, path.basename(a.path)]).sort()).toEqual([
      ['erofs', 'rootfs.erofs'],
      ['squashfs', 'rootfs.squashfs'],
      ['tarball', 'rootfs.tar.zst'],
    ]);
    expect(fs.readdirSync(arts.outDir).sort()).toEqual(['MANIFEST.json', 'SHA256SUMS', 'rootfs.erofs', 'rootfs.squashfs', 'rootfs.tar.zst']);
    expect(drp.artifacts.map((a) => path.basename(a.path))).toEqual(['rootfs.squashfs', 'rootfs.tgz']);
    expect(fs.readdirSync(drp.outDir).sort()).toEqual(['MANIFEST.json', 'SHA256SUMS', 'rootfs.squashfs', 'rootfs.tgz']);
    expect(fs.readdirSync(path.join(fx.cacheDir, 'out/arts')).filter((n) => n.startsWith('.'))).toEqual([]);
    expect(tmpEntries(fx.cacheDir)).toEqual([]);
  });

  it('the expected tree is the commit with /usr/etc at /etc, and it has what the manifest declares', () => {
    expect(expected.get('/usr/bin/su-helper')).toMatchObject({ type: 'f', mode: 0o4755, uid: 0, gid: 0 });
    expect(expected.get('/etc/web/secret')).toMatchObject({ type: 'f', mode: 0o600, uid: 3000, gid: 3000 });
    expect(expected.get('/etc/numeric')).toMatchObject({ type: 'f', mode: 0o640, uid: 4321, gid: 8765 });
    expect(expected.get('/etc/web/outside')).toMatchObject({ type: 'l', target: '../../../../etc/shadow' });
    expect(expected.get('/usr/share/factory/var/home/web/.ssh/authorized_keys')).toMatchObject({ type: 'f', mode: 0o600, uid: 3000, gid: 3000 });
    expect(expected.has('/usr/etc')).toBe(false);
    expect(expected.get('/etc')?.type).toBe('d');
  });

  it('squashfs (zstd): `unsquashfs -lln` equals the commit tree: files, modes, owners, setuid bits, link targets, sizes', () => {
    const sq = artifact(arts, 'squashfs').path;
    expect(normalize(squashfsList(sq))).toEqual(normalize(expected));
    expect(sh('unsquashfs', ['-s', sq])).toMatch(/Compression zstd/);
  });

  it('tarball (zstd): `tar -tvv --numeric-owner` equals the commit tree', () => {
    const tz = artifact(arts, 'tarball').path;
    expect(fs.readFileSync(tz).subarray(0, 4).toString('hex')).toBe('28b52ffd'); // zstd frame magic
    expect(normalize(tarList(tz))).toEqual(normalize(expected));
  });

  it('tarball (gzip, another image): rootfs.tgz equals its commit tree, gzip header without name or time', () => {
    const tgz = artifact(drp, 'tarball').path;
    expect(path.basename(tgz)).toBe('rootfs.tgz');
    const bytes = fs.readFileSync(tgz);
    expect(bytes.subarray(0, 2).toString('hex')).toBe('1f8b');
    expect(bytes.readUInt32LE(4)).toBe(0); // MTIME
    expect(bytes[3]! & 0x08).toBe(0); // FNAME
    expect(normalize(tarList(tgz))).toEqual(normalize(expectedDrp));
    expect(expectedDrp.get('/usr/bin/ping-helper')).toMatchObject({ mode: 0o4750, uid: 0, gid: 1500 });
  });

  it('from the hardlink checkout (no erofs output): files of equal content are separate files in the tarball and the squashfs, as in the commit', () => {
    // drp has no output that needs a copied checkout, so its outputs read the hardlink checkout.
    const sq = artifact(drp, 'squashfs').path;
    expect(normalize(squashfsList(sq))).toEqual(normalize(expectedDrp));
    // A listing cannot tell a hard link from a file: the inode count can (one per path, as in the commit).
    expect(Number(/Number of inodes (\d+)/.exec(sh('unsquashfs', ['-s', sq]))?.[1])).toBe(squashfsList(sq).size);
    expect(sh('tar', ['-tvzf', artifact(drp, 'tarball').path]).split('\n').filter((l) => l.startsWith('h'))).toEqual([]);
  });

  it('erofs: mounted read-only (as the kernel sees it), it equals the commit tree', () => {
    // Mounted rather than extracted: fsck.erofs --extract (1.5) drops setuid bits while extracting.
    const img = artifact(arts, 'erofs').path;
    const mnt = path.join(path.dirname(fx.dir), 'erofs-mnt');
    fs.mkdirSync(mnt);
    sh('mount', ['-t', 'erofs', '-o', 'loop,ro', img, mnt]);
    try {
      expect(normalize(dirListing(mnt))).toEqual(normalize(expected));
    } finally {
      sh('umount', [mnt]);
      fs.rmdirSync(mnt);
    }
  });

  it('MANIFEST.json: name, version, ref, commit, input hash, git commit, packages, and artifacts whose size and sha256 match the files', () => {
    const m = JSON.parse(fs.readFileSync(path.join(arts.outDir, 'MANIFEST.json'), 'utf8'));
    expect(m).toMatchObject({
      name: 'arts',
      version: '3.1',
      ref: 'arts/x86_64/stable',
      commit: arts.commit,
      inputHash: arts.inputHash,
      gitCommit: head,
      buildTime: new Date(FIXTURE_EPOCH * 1000).toISOString(),
      kernel: '6.1.0-test',
      packages: [
        { name: 'busybox-static', version: '1:1.35.0-4+b3', arch: 'amd64' },
        { name: 'fixture-base', version: '1.0', arch: 'all' },
      ],
    });
    expect(m.manifestSha256).toMatch(/^[0-9a-f]{64}$/);
    expect(revParse(fx.ostreeRepo, m.ref)).toBe(m.commit);
    expect(m.artifacts.map((a: { file: string }) => a.file)).toEqual(['rootfs.erofs', 'rootfs.squashfs', 'rootfs.tar.zst']);
    for (const a of m.artifacts as { type: string; file: string; size: number; sha256: string }[]) {
      const p = path.join(arts.outDir, a.file);
      expect(a.size, a.file).toBe(fs.statSync(p).size);
      expect(a.sha256, a.file).toBe(fileSha(p));
      // --json reports the same
      expect(arts.artifacts.find((x) => x.path === p)).toMatchObject({ type: a.type, size: a.size, sha256: a.sha256 });
    }
  });

  it('SHA256SUMS lists every artifact and verifies with `sha256sum -c`', () => {
    for (const img of [arts, drp]) {
      const sums = fs.readFileSync(path.join(img.outDir, 'SHA256SUMS'), 'utf8');
      expect(sums.trim().split('\n')).toHaveLength(img.artifacts.length);
      const out = sh('sha256sum', ['-c', '--strict', 'SHA256SUMS'], { cwd: img.outDir });
      for (const a of img.artifacts) expect(out).toContain(`${path.basename(a.path)}: OK`);
    }
  });

  it('two builds from clean caches give byte-identical squashfs, tarballs, erofs, MANIFEST.json and SHA256SUMS (the second with SOURCE_DATE_EPOCH set)', () => {
    const other = fx.newCacheDir();
    // The same epoch given the other documented way: mksquashfs must not see both it and -mkfs-time.
    const epoch = sh('git', ['log', '-1', '--format=%ct'], { cwd: fx.dir }).trim();
    const r = fx.cli(['build', '--json'], { cacheDir: other, env: { SOURCE_DATE_EPOCH: epoch } });
    expect(r.code, r.stderr).toBe(0);
    const again = (JSON.parse(r.stdout) as { images: BuiltImage[] }).images;
    for (const before of [arts, drp]) {
      const after = again.find((i) => i.name === before.name)!;
      expect(after.commit).toBe(before.commit);
      expect(after.outDir).toBe(path.join(other, 'out', before.name, before.version));
      const digests = (img: BuiltImage) => Object.fromEntries(img.artifacts.map((a) => [a.type, a.sha256]));
      expect(digests(after)).toEqual(digests(before));
      for (const a of after.artifacts) expect(fileSha(a.path)).toBe(a.sha256);
      for (const f of ['MANIFEST.json', 'SHA256SUMS']) expect(fs.readFileSync(path.join(after.outDir, f), 'utf8')).toBe(fs.readFileSync(path.join(before.outDir, f), 'utf8'));
    }
  });
});

describe('outputs that cannot be made are refused at validation, with their place in the manifest', () => {
  let fx: Fixture | undefined;
  afterAll(() => fx?.cleanup());

  const refused = (manifest: string) => {
    fx?.cleanup();
    fx = makeRepo({ prefix: 'outputs', files: { ...shellTree('trees/base', { kernel: false }), 'images/bad.yaml': manifest } });
    const r = fx.cli(['build', '--json']);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).not.toMatch(STACK_TRACE);
    expect(r.stderr).toMatch(/^treecast: invalid image manifests$/m);
    // Nothing was built: no commit, no artifacts.
    expect(fs.existsSync(path.join(fx.cacheDir, 'out'))).toBe(false);
    expect(revParse(fx.ostreeRepo, 'bad/x86_64/stable')).toBeUndefined();
    return r.stderr;
  };
  const lineOf = (text: string, needle: string) => text.split('\n').findIndex((l) => l.includes(needle)) + 1;

  it('a diskless output on an image without a kernel', () => {
    const manifest = 'name: bad\nbase: { source: tree, path: trees/base }\noutputs:\n  squashfs: {}\n  diskless: { kernel-args: [quiet] }\n';
    const err = refused(manifest);
    expect(err).toMatch(new RegExp(`^images/bad\\.yaml:${lineOf(manifest, 'diskless:')}:\\d+: outputs\\.diskless: a diskless output needs a kernel`, 'm'));
  });

  it('an unknown squashfs compression', () => {
    const manifest = 'name: bad\nbase: { source: tree, path: trees/base }\noutputs:\n  squashfs: { compression: brotli }\n';
    const err = refused(manifest);
    expect(err).toMatch(new RegExp(`^images/bad\\.yaml:${lineOf(manifest, 'brotli')}:\\d+: outputs\\.squashfs\\.compression: .*`, 'm'));
    expect(err).toMatch(/zstd/);
  });

  it('an unknown tarball compression', () => {
    const manifest = 'name: bad\nbase: { source: tree, path: trees/base }\noutputs:\n  tarball:\n    compression: lz4\n';
    const err = refused(manifest);
    expect(err).toMatch(new RegExp(`^images/bad\\.yaml:${lineOf(manifest, 'compression: lz4')}:\\d+: outputs\\.tarball\\.compression: .*`, 'm'));
  });

  it('compression levels outside their compressor\'s range (gzip 12; a level for an uncompressed tarball), both in one run', () => {
    const manifest = 'name: bad\nbase: { source: tree, path: trees/base }\noutputs:\n  squashfs:\n    compression: gzip\n    compression-level: 12\n  tarball:\n    compression: none\n    compression-level: 3\n';
    const err = refused(manifest);
    expect(err).toMatch(new RegExp(`^images/bad\\.yaml:${lineOf(manifest, 'compression-level: 12')}:\\d+: outputs\\.squashfs\\.compression-level: gzip levels are 1-9$`, 'm'));
    expect(err).toMatch(new RegExp(`^images/bad\\.yaml:${lineOf(manifest, 'compression-level: 3')}:\\d+: outputs\\.tarball\\.compression-level: an uncompressed tarball \\(compression: none\\) takes no compression level$`, 'm'));
  });
});
