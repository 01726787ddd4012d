/**
 * Issue #13, layered commits (docs/layers.md): a derived image starts as a
 * hardlink checkout of its base commit in the bare build repository and its
 * sandboxed steps write to an overlay. The proof that this is only faster, never different: the same
 * inputs built the old way (TREECAST_CHECKOUT=copy: a full byte copy and a
 * full commit, kept for this test only) give the SAME commit checksums,
 * listings and contents; and a postprocess that edits base files in place
 * (`echo >>`, `sed -i`, chmod, chown) leaves the cached base commit intact
 * (`ostree fsck` clean, base listing and content unchanged).
 * Postprocess also sets xattrs (the host's setfattr, with its libc, is put in
 * the fixture tree): no commit carries any, the commit after stripXattrs
 * is the one `--no-xattrs` gives, and `--link-checkout-speedup` then reads
 * only what changed (bytes read by ostree, from /proc/PID/io).
 * Tree-based tiny images from the shellTree fixture; no Debian.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureRepoMode, repoMode } from '../compiler/compile/ostree.js';
import { UserError } from '../compiler/diagnostics.js';
import { XATTR_LIST_ARGS, commitArgs, parseXattrListing, stripXattrs } from '../compiler/steps/commit.js';
import type { BuildContext } from '../compiler/steps/step.js';
import { makeRepo, ostreeCat, ostreeLs, requireTool, sh, shellTree, type BuiltImage, type FileSpec, type Fixture } from './helpers/build-fixture.js';

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
  // xattrs, which no commit may carry: on a base file (copied up for it), on
  // a file already in the upper layer, on a new file with a second link, on
  // a new and a base directory.
  'setfattr -n user.treecast -v base /usr/bin/setuid-in-base',
  'setfattr -n user.treecast -v edited /etc/hostname',
  'echo x > /etc/xattr-new && busybox ln /etc/xattr-new /etc/xattr-hardlink && setfattr -n user.treecast -v new /etc/xattr-new',
  'setfattr -n user.treecast -v dir /usr/lib/derived && setfattr -n user.treecast -v dir /usr/share',
];

/** The host's setfattr and what it loads, at the same paths in the fixture tree (its /lib is a link to usr/lib). */
function hostSetfattr(prefix: string): Record<string, FileSpec> {
  const bin = requireTool('setfattr');
  const files: Record<string, FileSpec> = { [`${prefix}/usr/bin/setfattr`]: { content: fs.readFileSync(bin), mode: 0o755 }, [`${prefix}/lib64`]: { symlink: 'usr/lib64' } };
  for (const m of sh('ldd', [bin]).matchAll(/(\/\S+) \(0x/g)) {
    const lib = m[1]!.replace(/^\/(lib|lib64)\//, '/usr/$1/');
    files[`${prefix}${lib}`] = { content: fs.readFileSync(m[1]!), mode: 0o755 };
  }
  return files;
}

/** No entry of the commit has an xattr (`ostree ls -X`). */
function xattrLines(repo: string, rev: string): string[] {
  return sh('ostree', ['ls', `--repo=${repo}`, '-R', '-X', rev]).split('\n').filter((l) => l && !l.includes('{ @a(ayay) [] }'));
}

/** `ostree ARGS` and the bytes it read (every read(2), cached or not): a shell's /proc/PID/io counts its reaped children. */
function ostreeReading(args: string[]): { out: string; bytes: number } {
  const lines = sh('sh', ['-c', 'ostree "$@" && sed -n "s/^rchar: //p" /proc/$$/io', 'sh', ...args]).trim().split('\n');
  return { out: lines.slice(0, -1).join('\n'), bytes: Number(lines.at(-1)) };
}

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
    for (const t of ['ostree', 'bwrap', 'mount', 'umount', 'systemctl', 'getfattr', 'setfattr', 'ldd']) requireTool(t);
    fx = makeRepo({
      prefix: 'layers',
      files: {
        ...shellTree('rootfs', { kernel: false }),
        ...hostSetfattr('rootfs'),
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

  it('xattrs set by postprocess reach no commit, either way (ostree ls -X)', () => {
    for (const [repo, images] of [[fx.ostreeRepo, layered], [path.join(copyCache, 'repo'), copied]] as const) {
      for (const name of ['base', 'derived']) expect(xattrLines(repo, byName(images, name).commit), `${name} in ${repo}`).toEqual([]);
    }
    const d = byName(layered, 'derived').commit;
    expect(ostreeCat(fx.ostreeRepo, d, '/usr/etc/xattr-new')).toBe('x\n');
    expect(ostreeCat(fx.ostreeRepo, d, '/usr/etc/xattr-hardlink')).toBe('x\n');
    expect(ostreeLs(fx.ostreeRepo, d).get('/usr/bin/setuid-in-base')).toMatchObject({ mode: 0o4755, uid: 0, gid: 0 });
  });

  it('stripXattrs removes every xattr of a root (user, trusted, security.capability; files, links, dirs, odd names), never through a linked inode', async () => {
    const w = fx.newCacheDir();
    const root = path.join(w, 'root');
    const odd = 'odd\nname \\ =x';
    fs.mkdirSync(path.join(root, 'd/sub'), { recursive: true });
    fs.writeFileSync(path.join(root, 'f'), 'f\n');
    fs.chmodSync(path.join(root, 'f'), 0o4755);
    fs.symlinkSync('/etc/passwd', path.join(root, 'l')); // a link to the host: never followed
    // Nor is a link to a directory outside the root descended.
    const outside = path.join(w, 'outside');
    fs.mkdirSync(outside);
    fs.writeFileSync(path.join(outside, 'f'), 'outside\n');
    sh('setfattr', ['-n', 'user.outside', '-v', '1', path.join(outside, 'f')]);
    fs.symlinkSync(outside, path.join(root, 'd/out'));
    fs.writeFileSync(path.join(root, 'd', odd), 'odd\n');
    // Stands for an object of the build repository that the root is a hardlink checkout of.
    const object = path.join(w, 'object');
    fs.writeFileSync(object, 'object\n');
    fs.linkSync(object, path.join(root, 'd/sub/linked'));
    const set = (name: string, value: string, p: string) => sh('setfattr', ['--no-dereference', '-n', name, '-v', value, path.join(root, p)]);
    set('user.a', '1', 'f');
    set('trusted.overlay.origin', '0x00', 'f');
    set('security.capability', '0x0100000200200000000000000000000000000000', 'f'); // what setcap cap_net_raw+ep writes
    set('trusted.overlay.opaque', 'y', 'd');
    set('user.d', '1', 'd/sub');
    set('user.r', '1', '.');
    set('trusted.t', '1', 'l');
    set('user.o', '1', `d/${odd}`);
    sh('setfattr', ['-n', 'user.obj', '-v', '1', object]);
    const listed = parseXattrListing(Buffer.from(sh('getfattr', XATTR_LIST_ARGS, { cwd: root })));
    expect(listed.map((e) => e.path).sort()).toEqual(['.', 'd', `d/${odd}`, 'd/sub', 'd/sub/linked', 'f', 'l'].sort());
    expect(listed.find((e) => e.path === 'f')!.names.sort()).toEqual(['security.capability', 'trusted.overlay.origin', 'user.a']);

    expect(await stripXattrs(root)).toBe(7);
    expect(sh('getfattr', XATTR_LIST_ARGS, { cwd: root })).toBe('');
    // The object kept its xattr and its bytes; the root's entry got an inode of its own.
    expect(sh('getfattr', ['--only-values', '-n', 'user.obj', object])).toBe('1');
    expect(fs.statSync(object).nlink).toBe(1);
    expect(fs.readFileSync(path.join(root, 'd/sub/linked'), 'utf8')).toBe('object\n');
    expect(fs.statSync(path.join(root, 'f')).mode & 0o7777).toBe(0o4755);
    expect(fs.readlinkSync(path.join(root, 'l'))).toBe('/etc/passwd');
    expect(sh('getfattr', ['--only-values', '-n', 'user.outside', path.join(outside, 'f')])).toBe('1');
    expect(await stripXattrs(root)).toBe(0);

    // A name setfattr cannot be given fails the build: its xattrs never reach a commit.
    const bad = path.join(w, 'bad');
    fs.mkdirSync(bad);
    sh('sh', ['-c', 'cd "$1" && n=$(printf "\\377") && echo x > "$n" && setfattr -n user.x -v 1 "$n"', 'sh', bad]);
    await expect(stripXattrs(bad)).rejects.toThrow(UserError);
    await expect(stripXattrs(bad)).rejects.toThrow(/could not remove these xattrs[\s\S]*\n {2}\uFFFD: user\.x\n/);
  });

  it('after stripXattrs, the commit of a hardlink checkout reads only the changed file, and is the commit --no-xattrs gives', async () => {
    const repo = fx.ostreeRepo;
    const d = byName(layered, 'derived').commit;
    const w = fx.newCacheDir();
    fs.mkdirSync(w, { recursive: true });
    const info = { version: '9', manifestSha256: '0'.repeat(64), inputHash: '1'.repeat(64), gitCommit: '2'.repeat(40) };
    // treecast's own argv (commitTree), for a root at `root`.
    const argsFor = (root: string) =>
      commitArgs({ localRepo: repo, ref: 'speedup/test', root, epoch: 0, manifest: { name: 'speedup' } as BuildContext['manifest'], packages: [], kernels: [] }, info);
    const changed = (root: string, copy: boolean) => {
      sh('ostree', ['checkout', `--repo=${repo}`, ...(copy ? ['--force-copy'] : []), d, root]);
      const f = path.join(root, 'usr/etc/hostname');
      fs.rmSync(f); // replaced, as rootfs.ts and the overlay fold-back do
      fs.writeFileSync(f, 'changed\n');
      sh('setfattr', ['-n', 'user.treecast', '-v', 'changed', f]);
      return root;
    };
    const links = changed(path.join(w, 'links'), false);
    const copy = changed(path.join(w, 'copy'), true);
    let total = 0; // bytes of the tree's regular files
    for (const e of ostreeLs(repo, d).values()) total += e.size ?? 0;
    expect(total).toBeGreaterThan(1 << 20); // busybox and libc

    // Until now: a full copy, its xattrs left for --no-xattrs to ignore.
    const old = ostreeReading(argsFor(copy).map((a) => (a === '--link-checkout-speedup' ? '--no-xattrs' : a)));
    expect(await stripXattrs(links)).toBe(1);
    const fast = ostreeReading(argsFor(links));
    // With --no-xattrs, ostree 2022.7 ignores the speedup and reads every file.
    const ignored = ostreeReading([...argsFor(links), '--no-xattrs']);
    expect(fast.out).toMatch(/^[0-9a-f]{64}$/);
    expect(fast.out).toBe(old.out);
    expect(ignored.out).toBe(old.out);
    expect(old.bytes).toBeGreaterThan(total);
    expect(ignored.bytes).toBeGreaterThan(total);
    expect(fast.bytes).toBeLessThan(total / 10);
    sh('ostree', ['fsck', `--repo=${repo}`]);
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
