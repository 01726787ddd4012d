/**
 * Nothing private in the published tree by accident: everything under
 * public/ (artifacts and the archive repo's objects) goes to anyone who can
 * reach it, so a 0600 file in an image is public in practice. MANIFEST.json,
 * index.json and index.html must say which files and directories of each
 * version are not world-readable, listed correctly, escaped on the page, and
 * the walk that finds them must never follow a symlink out of the tree.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { privateFiles, privateFilesFromOstreeLs, type PrivateFile } from '../../compiler/compile/private-files.js';
import { buildCatalog, renderIndexHtml } from '../../compiler/publish/catalog.js';
import type { ImageManifestJson } from '../../compiler/compile/emit.js';
import { deployedLayout, makeRepo, ostreeLs, requireTool, shellTree, squashfsList, type BuiltImage, type Fixture, type Listing } from '../helpers/build-fixture.js';
import { makeCanaries, type Canaries } from './canary.js';

/** The non-world-readable regular files and directories of a listing, as MANIFEST.json lists them. */
function expectedPrivate(l: Listing): PrivateFile[] {
  return [...l.entries()]
    .filter(([, e]) => e.type !== 'l' && (e.mode & 0o004) === 0)
    .map(([p, e]) => ({ path: p, mode: e.mode.toString(8).padStart(4, '0'), owner: e.uid, group: e.gid, type: e.type === 'd' ? ('dir' as const) : ('file' as const) }))
    .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

describe('privateFiles(tree): lstat walk of a checkout', () => {
  let canaries: Canaries;
  let tree: string;

  beforeAll(() => {
    canaries = makeCanaries();
    tree = fs.mkdtempSync(path.join(os.tmpdir(), 'treecast-private-walk-'));
    fs.chmodSync(tree, 0o755);
    const file = (rel: string, mode: number, content = 'x\n') => {
      fs.mkdirSync(path.dirname(path.join(tree, rel)), { recursive: true });
      fs.writeFileSync(path.join(tree, rel), content);
      fs.chmodSync(path.join(tree, rel), mode);
    };
    file('etc/hostname', 0o644);
    file('etc/shadow', 0o640);
    file('etc/app/token', 0o600);
    file('usr/bin/helper', 0o4750);
    file('usr/bin/tool', 0o755);
    file('etc/nobody', 0o000);
    fs.mkdirSync(path.join(tree, 'etc/sudoers.d'));
    fs.chmodSync(path.join(tree, 'etc/sudoers.d'), 0o750);
    // A world-readable file inside a private directory is listed by its directory only.
    fs.mkdirSync(path.join(tree, 'srv/vault'), { recursive: true });
    file('srv/vault/readme', 0o644);
    fs.chmodSync(path.join(tree, 'srv/vault'), 0o700);
    // Links out of the tree at the 0600 canary and at a directory holding a 0600 key: never followed, never listed.
    fs.symlinkSync(canaries.secret, path.join(tree, 'etc/leak'));
    fs.symlinkSync(canaries.nest, path.join(tree, 'etc/nest'));
    fs.symlinkSync('/', path.join(tree, 'hostroot'));
    // A FIFO is neither a file nor a directory: no artifact carries it.
    const fifo = spawnSync('mkfifo', ['-m', '0600', path.join(tree, 'etc/pipe')]);
    expect(fifo.status, String(fifo.stderr)).toBe(0);
  });

  afterAll(() => {
    if (tree) fs.rmSync(tree, { recursive: true, force: true });
    canaries?.cleanup();
  });

  it('lists exactly the non-world-readable files and directories, image-absolute, sorted, with mode and owner', () => {
    const uid = process.getuid!();
    const gid = process.getgid!();
    expect(privateFiles(tree)).toEqual([
      { path: '/etc/app/token', mode: '0600', owner: uid, group: gid, type: 'file' },
      { path: '/etc/nobody', mode: '0000', owner: uid, group: gid, type: 'file' },
      { path: '/etc/shadow', mode: '0640', owner: uid, group: gid, type: 'file' },
      { path: '/etc/sudoers.d', mode: '0750', owner: uid, group: gid, type: 'dir' },
      { path: '/srv/vault', mode: '0700', owner: uid, group: gid, type: 'dir' },
      { path: '/usr/bin/helper', mode: '4750', owner: uid, group: gid, type: 'file' },
    ]);
    canaries.assertUnchanged();
  });

  it('lists the root itself when it is private, and refuses a tree that is a symlink', () => {
    fs.chmodSync(tree, 0o711);
    try {
      expect(privateFiles(tree)[0]).toEqual({ path: '/', mode: '0711', owner: process.getuid!(), group: process.getgid!(), type: 'dir' });
    } finally {
      fs.chmodSync(tree, 0o755);
    }
    const link = `${tree}-link`;
    fs.symlinkSync(canaries.nest, link);
    try {
      expect(() => privateFiles(link)).toThrow(/not a directory/);
    } finally {
      fs.rmSync(link);
    }
    canaries.assertUnchanged();
  });

  it('costs well under a second on a Debian-sized tree (20k entries)', () => {
    const big = fs.mkdtempSync(path.join(os.tmpdir(), 'treecast-private-big-'));
    fs.chmodSync(big, 0o755);
    try {
      for (let d = 0; d < 200; d++) {
        const dir = path.join(big, `d${d}`);
        fs.mkdirSync(dir, { mode: d % 50 ? 0o755 : 0o700 });
        for (let f = 0; f < 99; f++) fs.writeFileSync(path.join(dir, `f${f}`), '', { mode: f % 33 ? 0o644 : 0o600 });
      }
      const t0 = performance.now();
      const listed = privateFiles(big);
      const ms = performance.now() - t0;
      // 4 private dirs, 3 private files in each of the 200 dirs.
      expect(listed.length).toBe(4 + 200 * 3);
      expect(ms).toBeLessThan(1000);
    } finally {
      fs.rmSync(big, { recursive: true, force: true });
    }
  });
});

describe('privateFilesFromOstreeLs: the commit listing, in the deployed layout', () => {
  const listing = [
    'd00755 0 0      0 /',
    'l00777 0 0      0 /etc -> usr/etc',
    'd00700 0 0      0 /usr/share/factory/var/lib/private',
    '-00600 0 0      6 /usr/share/factory/var/lib/private/k',
    'd00755 0 0      0 /usr/etc',
    '-00640 0 42     9 /usr/etc/shadow',
    '-00644 0 0      9 /usr/etc/passwd',
    '-00600 0 0      1 /usr/etc/odd -> name',
    'l00777 0 0      0 /usr/etc/mtab -> /proc/self/mounts',
    '-04750 0 1500   2 /usr/bin/ping-helper',
    '',
  ].join('\n');

  it('maps /usr/etc to /etc, skips symlinks and world-readable entries, keeps " -> " in a regular file name', () => {
    expect(privateFilesFromOstreeLs(listing)).toEqual([
      { path: '/etc/odd -> name', mode: '0600', owner: 0, group: 0, type: 'file' },
      { path: '/etc/shadow', mode: '0640', owner: 0, group: 42, type: 'file' },
      { path: '/usr/bin/ping-helper', mode: '4750', owner: 0, group: 1500, type: 'file' },
      { path: '/usr/share/factory/var/lib/private', mode: '0700', owner: 0, group: 0, type: 'dir' },
      { path: '/usr/share/factory/var/lib/private/k', mode: '0600', owner: 0, group: 0, type: 'file' },
    ]);
  });

  it('fails on a line it cannot read (a name with a newline) instead of dropping an entry', () => {
    expect(() => privateFilesFromOstreeLs('-00600 0 0      1 /etc/a\nb\n')).toThrow(/cannot read this line/);
  });
});

describe('index.html escapes what an image names', () => {
  it('shows the count and an escaped list; an old manifest without the list is "not recorded", not zero', () => {
    const base: ImageManifestJson = {
      name: 'x',
      version: '1.1',
      ref: 'x/x86_64/stable',
      commit: 'a'.repeat(64),
      inputHash: 'h',
      gitCommit: 'g',
      manifestSha256: '',
      buildTime: '2024-01-01T00:00:00.000Z',
      kernelArgs: [],
      artifacts: [],
      packages: [],
      privateFiles: [
        { path: '/etc/<img src=x onerror=alert(1)>', mode: '0600', owner: 0, group: 0, type: 'file' },
        { path: '/root', mode: '0700', owner: 0, group: 0, type: 'dir' },
      ],
    };
    const old = { ...base, version: '1.0', buildTime: '2023-01-01T00:00:00.000Z' } as Partial<ImageManifestJson>;
    delete old.privateFiles;
    const catalog = buildCatalog({ url: 'http://h', remote: 'treecast', signed: false, updated: 'now', images: [{ name: 'x', hasIpxe: false, versions: [base, old as ImageManifestJson] }] });
    const [newest, oldest] = catalog.images[0]!.versions;
    expect(newest!.privateFileCount).toBe(2);
    expect(newest!.privateFiles).toEqual(base.privateFiles);
    expect(oldest!.privateFileCount).toBeNull();
    const html = renderIndexHtml(catalog);
    expect(html).toContain('2 files not world-readable');
    expect(html).toContain('/etc/&lt;img src=x onerror=alert(1)&gt;');
    expect(html).not.toContain('<img');
    expect(html).toContain('0700 0:0 /root/');
    expect(html).toContain('not recorded');
  });
});

// ---------------------------------------------------------------------------
// end to end: treecast build + publish
// ---------------------------------------------------------------------------

/** Escaping end to end: a private file whose name is markup. */
const MARKUP = '/etc/app/<b>bold</b>&amp.conf';

const WITH_ARTIFACTS = `name: priv
base: { source: tree, path: trees/base }
automatic-version-prefix: "1"
files:
  - { path: /etc/app/token, content: "not a real token\\n", mode: "0600", owner: root, group: root }
  - { path: /etc/app/key.pem, content: "not a real key\\n", mode: "0640", owner: 0, group: 42 }
  - { path: "${MARKUP}", content: "x\\n", mode: "0600" }
  - { path: /etc/app/public.conf, content: "ok\\n", mode: "0644" }
outputs:
  ostree: {}
  squashfs: {}
`;

/** No artifact: emit makes no checkout, and the list comes from the commit. */
const COMMIT_ONLY = `name: privcommit
base: { source: tree, path: trees/base }
automatic-version-prefix: "1"
files:
  - { path: /etc/app/token, content: "not a real token\\n", mode: "0600" }
outputs:
  ostree: {}
`;

interface IndexJson {
  images: { name: string; versions: { version: string; privateFileCount: number | null; privateFiles: PrivateFile[] | null }[] }[];
}

describe('treecast build + publish: MANIFEST.json, index.json and index.html list what is not world-readable', () => {
  let fx: Fixture;
  let pub: string;
  let built: Record<string, BuiltImage>;
  let indexJson: IndexJson;
  let indexHtml: string;
  const manifest = (name: string) => JSON.parse(fs.readFileSync(path.join(pub, 'images', name, built[name]!.version, 'MANIFEST.json'), 'utf8')) as ImageManifestJson;
  const commitPrivate = (name: string) => expectedPrivate(deployedLayout(ostreeLs(fx.ostreeRepo, built[name]!.commit)));

  beforeAll(() => {
    requireTool('ostree');
    requireTool('unsquashfs');
    fx = makeRepo({
      prefix: 'privacy',
      files: {
        ...shellTree('trees/base', { kernel: false }),
        'trees/base/var/lib/private-state': { dir: true, mode: 0o700 },
        'images/priv.yaml': WITH_ARTIFACTS,
        'images/privcommit.yaml': COMMIT_ONLY,
      },
    });
    built = Object.fromEntries(fx.build().map((b) => [b.name, b]));
    pub = path.join(fx.dir, '..', 'public');
    const r = fx.cli(['publish', '--dir', pub, '--url', 'http://127.0.0.1:9/pub', '--json']);
    if (r.code !== 0) throw new Error(`treecast publish failed (exit ${r.code}):\n${r.stderr}`);
    indexJson = JSON.parse(fs.readFileSync(path.join(pub, 'index.json'), 'utf8')) as IndexJson;
    indexHtml = fs.readFileSync(path.join(pub, 'index.html'), 'utf8');
  }, 300_000);

  afterAll(() => fx?.cleanup());

  it('MANIFEST.json lists exactly the commit\'s non-world-readable files and directories (deployed layout)', () => {
    const listed = manifest('priv').privateFiles;
    expect(listed).toEqual(commitPrivate('priv'));
    // The entries this fixture was written to have, so an empty or wrong listing on both sides cannot pass.
    const byPath = new Map(listed.map((f) => [f.path, f]));
    expect(byPath.get('/etc/shadow')).toMatchObject({ mode: '0640', type: 'file' });
    expect(byPath.get('/etc/gshadow')).toMatchObject({ mode: '0640', type: 'file' });
    expect(byPath.get('/etc/app/token')).toEqual({ path: '/etc/app/token', mode: '0600', owner: 0, group: 0, type: 'file' });
    expect(byPath.get('/etc/app/key.pem')).toEqual({ path: '/etc/app/key.pem', mode: '0640', owner: 0, group: 42, type: 'file' });
    expect(byPath.get(MARKUP)).toMatchObject({ mode: '0600', type: 'file' });
    expect(byPath.has('/etc/app/public.conf')).toBe(false);
    expect(listed.some((f) => f.type === 'dir' && f.path.endsWith('/private-state'))).toBe(true);
    expect(listed.every((f) => !f.path.startsWith('/usr/etc'))).toBe(true);
  });

  it('is what the squashfs anyone can download holds', () => {
    const sq = built.priv!.artifacts.find((a) => a.type === 'squashfs')!;
    expect(expectedPrivate(squashfsList(path.join(pub, 'images', 'priv', built.priv!.version, path.basename(sq.path))))).toEqual(manifest('priv').privateFiles);
  });

  it('an image without artifacts (no checkout) is listed from its commit, which repo/ publishes', () => {
    const listed = manifest('privcommit').privateFiles;
    expect(listed).toEqual(commitPrivate('privcommit'));
    expect(listed.map((f) => f.path)).toEqual(expect.arrayContaining(['/etc/app/token', '/etc/shadow', '/etc/gshadow']));
    expect(manifest('privcommit').artifacts).toEqual([]);
  });

  it('index.json carries the list and the count per version', () => {
    for (const name of ['priv', 'privcommit']) {
      const v = indexJson.images.find((i) => i.name === name)!.versions[0]!;
      expect(v.privateFiles).toEqual(manifest(name).privateFiles);
      expect(v.privateFileCount).toBe(manifest(name).privateFiles.length);
    }
  });

  it('index.html shows the count per version and the escaped list', () => {
    for (const name of ['priv', 'privcommit']) {
      const section = indexHtml.slice(indexHtml.indexOf(`data-image="${name}"`));
      const n = manifest(name).privateFiles.length;
      expect(section).toContain(`<details class="private" data-count="${n}"><summary>${n} files not world-readable</summary>`);
    }
    expect(indexHtml).toContain('/etc/app/&lt;b&gt;bold&lt;/b&gt;&amp;amp.conf');
    expect(indexHtml).not.toContain('<b>bold</b>');
    expect(indexHtml).toContain('0640 0:42 /etc/app/key.pem');
  });
});
