/**
 * Issue #13, layered commits (docs/layers.md): a derived image starts as a
 * hardlink checkout of its base commit in the bare build repository and its
 * sandboxed steps write to an overlay. The proof that this is only faster, never different: the same
 * inputs built the old way (TREECAST_CHECKOUT=copy: a full byte copy and a
 * full commit, kept for this test only) give the SAME commit checksums,
 * listings and contents; and a postprocess that edits base files in place
 * (`echo >>`, `sed -i`, chmod, chown) leaves the cached base commit intact
 * (`ostree fsck` clean, base listing and content unchanged).
 * Tree-based tiny images from the shellTree fixture; no Debian.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureRepoMode, repoMode } from '../compiler/build/ostree.js';
import { makeRepo, ostreeCat, ostreeLs, requireTool, sh, shellTree, type BuiltImage, type Fixture } from './helpers/build-fixture.js';

const BASE_REF = 'layers/base/x86_64/stable';
const DERIVED_REF = 'layers/derived/x86_64/stable';

// Edits of files the base commit holds, in place, through every kind of change a script makes.
const POSTPROCESS = [
  'echo "appended by derived" >> /etc/hostname',
  'busybox sed -i s/fixture/derived-sed/ /usr/lib/os-release',
  'chmod 4755 /usr/sbin/nologin',
  'busybox chown 999:999 /etc/base-owned.conf',
  'rm /etc/base-doomed.conf',
  // A directory of the base removed and made again: an opaque directory in the overlay.
  'rm -rf /usr/share/base-dir && mkdir -p /usr/share/base-dir && echo fresh > /usr/share/base-dir/fresh',
  // A directory of the base renamed: rename(2) says EXDEV on the overlay, mv copies.
  'busybox mv /usr/share/base-moved /usr/share/derived-moved',
  'busybox ln -sf /usr/lib/os-release /etc/base-link',
  'mkdir -p /usr/lib/derived && echo new > /usr/lib/derived/file && chmod 2750 /usr/lib/derived',
];

const manifests = (overlayNote: string) => ({
  'images/base.yaml': `name: base\nref: ${BASE_REF}\nautomatic-version-prefix: "1.0"\nbase: { source: tree, path: rootfs }\noverlays: [overlays/base]\noutputs: { ostree: {} }\n`,
  'images/derived.yaml': [
    'name: derived',
    `ref: ${DERIVED_REF}`,
    'automatic-version-prefix: "1.0"',
    'base: { source: image, image: base }',
    'overlays: [overlays/derived]',
    'remove-files: ["/usr/share/base-gone/**"]',
    'files:',
    '  - { path: /etc/role, content: "derived\\n", mode: "0640", owner: 999, group: 999 }',
    '  - { path: /usr/bin/suid-tool, content: "#!/bin/sh\\n", mode: "4755" }',
    '  - { path: /etc/base-replaced.conf, content: "replaced by files[]\\n", mode: "0600" }',
    '  - { path: /etc/derived-link, symlink: base-owned.conf }',
    'groups: [{ name: ops, gid: 1500 }]',
    'users: [{ name: alice, uid: 1100, groups: [ops] }]',
    'units: { enable: [app.service] }',
    'postprocess:',
    ...POSTPROCESS.map((p) => `  - ${JSON.stringify(p)}`),
    'outputs: { ostree: {} }',
    '',
  ].join('\n'),
  'overlays/derived/etc/derived.conf': overlayNote,
});

describe('layered commits: hardlink checkouts and overlays give the commits of full copies', () => {
  let fx: Fixture;
  let copyCache: string;
  const byName = (images: BuiltImage[], name: string) => images.find((i) => i.name === name)!;
  const build = (copy: boolean) => {
    const r = fx.cli(['build', '--json'], { cacheDir: copy ? copyCache : fx.cacheDir, env: copy ? { TREECAST_CHECKOUT: 'copy' } : {}, timeoutMs: 120_000 });
    if (r.code !== 0) throw new Error(`treecast build failed (exit ${r.code}):\n${r.stderr}`);
    return (JSON.parse(r.stdout) as { images: BuiltImage[] }).images;
  };
  let layered: BuiltImage[];
  let copied: BuiltImage[];
  let baseListing: Map<string, unknown>;

  beforeAll(() => {
    for (const t of ['ostree', 'bwrap', 'mount', 'umount', 'systemctl']) requireTool(t);
    fx = makeRepo({
      prefix: 'layers',
      files: {
        ...shellTree('rootfs', { kernel: false }),
        'rootfs/etc/base-owned.conf': 'owned by root in the base\n',
        'rootfs/etc/base-doomed.conf': 'removed by the derived image\n',
        'rootfs/etc/base-replaced.conf': 'replaced by files[] of the derived image\n',
        'rootfs/etc/base-link': { symlink: 'hostname' },
        'rootfs/usr/share/base-dir/old': 'hidden by an opaque directory\n',
        'rootfs/usr/share/base-dir/sub/deeper': 'also hidden\n',
        'rootfs/usr/share/base-moved/a': 'moved a\n',
        'rootfs/usr/share/base-gone/x': 'remove-files\n',
        'rootfs/usr/bin/setuid-in-base': { content: '#!/bin/sh\n', mode: 0o4755 },
        'overlays/base/etc/motd': 'base motd\n',
        ...manifests('derived v1\n'),
      },
    });
    copyCache = fx.newCacheDir();
    layered = build(false);
    copied = build(true);
    baseListing = ostreeLs(fx.ostreeRepo, byName(layered, 'base').commit);
  }, 90_000);

  afterAll(() => fx?.cleanup());

  it('builds the same base and derived commits either way (checksums, listings)', () => {
    for (const name of ['base', 'derived']) {
      expect(byName(layered, name).commit, name).toBe(byName(copied, name).commit);
    }
    const d = byName(layered, 'derived').commit;
    expect(ostreeLs(fx.ostreeRepo, d)).toEqual(ostreeLs(path.join(copyCache, 'repo'), d));
    // The build repository is bare: owners and modes are the files' own.
    expect(fs.readFileSync(path.join(fx.ostreeRepo, 'config'), 'utf8')).toMatch(/^mode=bare$/m);
  });

  it('the derived commit holds every edit: content, modes, owners, suid, links, deletions, opaque and moved dirs', () => {
    const d = byName(layered, 'derived').commit;
    const ls = ostreeLs(fx.ostreeRepo, d);
    const cat = (p: string) => ostreeCat(fx.ostreeRepo, d, p);
    expect(cat('/usr/etc/hostname')).toBe('fixture\nappended by derived\n');
    expect(cat('/usr/lib/os-release')).toContain('ID=treecast-derived-sed');
    expect(ls.get('/usr/sbin/nologin')).toMatchObject({ mode: 0o4755, uid: 0, gid: 0 });
    expect(ls.get('/usr/etc/base-owned.conf')).toMatchObject({ uid: 999, gid: 999, mode: 0o644 });
    expect(ls.has('/usr/etc/base-doomed.conf')).toBe(false);
    expect(ls.has('/usr/share/base-dir/old')).toBe(false);
    expect(ls.has('/usr/share/base-dir/sub')).toBe(false);
    expect(cat('/usr/share/base-dir/fresh')).toBe('fresh\n');
    expect(ls.has('/usr/share/base-moved')).toBe(false);
    expect(cat('/usr/share/derived-moved/a')).toBe('moved a\n');
    expect(ls.has('/usr/share/base-gone/x')).toBe(false);
    expect(ls.get('/usr/etc/base-link')).toMatchObject({ type: 'l', target: '/usr/lib/os-release' });
    expect(ls.get('/usr/etc/derived-link')).toMatchObject({ type: 'l', target: 'base-owned.conf' });
    expect(ls.get('/usr/etc/role')).toMatchObject({ mode: 0o640, uid: 999, gid: 999 });
    expect(ls.get('/usr/bin/suid-tool')).toMatchObject({ mode: 0o4755 });
    expect(ls.get('/usr/bin/setuid-in-base')).toMatchObject({ mode: 0o4755 });
    expect(cat('/usr/etc/base-replaced.conf')).toBe('replaced by files[]\n');
    expect(ls.get('/usr/lib/derived')).toMatchObject({ type: 'd', mode: 0o2750 });
    expect(cat('/usr/lib/derived/file')).toBe('new\n');
    expect(cat('/usr/etc/derived.conf')).toBe('derived v1\n');
    expect(cat('/usr/etc/passwd')).toMatch(/^alice:x:1100:/m);
    expect(ls.get('/usr/etc/systemd/system/multi-user.target.wants/app.service')).toMatchObject({ type: 'l' });
  });

  it('in-place edits in postprocess leave the cached base commit intact (fsck clean, listing and content unchanged)', () => {
    const base = byName(layered, 'base').commit;
    sh('ostree', ['fsck', `--repo=${fx.ostreeRepo}`]);
    expect(ostreeLs(fx.ostreeRepo, base)).toEqual(baseListing);
    expect(ostreeCat(fx.ostreeRepo, base, '/usr/etc/hostname')).toBe('fixture\n');
    expect(ostreeCat(fx.ostreeRepo, base, '/usr/lib/os-release')).toContain('ID=treecast-fixture');
    expect(baseListing.get('/usr/sbin/nologin')).toMatchObject({ mode: 0o755 });
    expect(baseListing.get('/usr/etc/base-owned.conf')).toMatchObject({ uid: 0, gid: 0 });
    // No overlay of a sandboxed step is left mounted, no scratch dir left behind.
    expect(fs.readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(fx.cacheDir);
    expect(fs.readdirSync(path.join(fx.cacheDir, 'tmp'))).toEqual([]);
  });

  it('a rebuild after an overlay edit starts from the cached commits and still matches the full copy', () => {
    fx.write('overlays/derived/etc/derived.conf', 'derived v2\n');
    fx.commit('edit the derived overlay');
    const again = build(false);
    const againCopy = build(true);
    expect(byName(again, 'base').cached).toBe(true);
    expect(byName(again, 'derived').cached).toBe(false);
    expect(byName(again, 'derived').commit).toBe(byName(againCopy, 'derived').commit);
    expect(ostreeCat(fx.ostreeRepo, byName(again, 'derived').commit, '/usr/etc/derived.conf')).toBe('derived v2\n');
    sh('ostree', ['fsck', `--repo=${fx.ostreeRepo}`]);
    expect(ostreeLs(fx.ostreeRepo, byName(again, 'base').commit)).toEqual(baseListing);
  });

  it('converts a bare-user cache of an older treecast once, keeping its refs and their history', async () => {
    const oldRepo = path.join(fx.newCacheDir(), 'repo');
    fs.mkdirSync(path.dirname(oldRepo));
    sh('ostree', ['init', `--repo=${oldRepo}`, '--mode=bare-user']);
    sh('ostree', ['pull-local', `--repo=${oldRepo}`, '--depth=-1', fx.ostreeRepo, BASE_REF, DERIVED_REF]);
    const logOf = (r: string) => sh('ostree', ['log', `--repo=${oldRepo}`, r]);
    const before = [BASE_REF, DERIVED_REF].map(logOf);
    // What a build does first, under its lock (buildImagesLocked).
    await ensureRepoMode(oldRepo, 'bare');
    expect(repoMode(oldRepo)).toBe('bare');
    expect([BASE_REF, DERIVED_REF].map(logOf)).toEqual(before);
    expect(before[1]).toMatch(/Version: 1\.0\.2[\s\S]*Version: 1\.0\.1/); // the rebuild above and its parent
    sh('ostree', ['fsck', `--repo=${oldRepo}`]);
    expect(fs.existsSync(`${oldRepo}.old`) || fs.existsSync(`${oldRepo}.migrating`)).toBe(false);
    // A second run finds nothing to do.
    await ensureRepoMode(oldRepo, 'bare');
    expect([BASE_REF, DERIVED_REF].map(logOf)).toEqual(before);
  });
});
