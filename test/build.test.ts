/**
 * Issue "Compile": a tree-based image with every kind of input (overlays,
 * files[], users and groups, units, postprocess) built with the real CLI into
 * a real OSTree repository, inspected with `ostree ls -R` / `ostree cat`,
 * deployed with `ostree admin deploy`; then caching, versions,
 * reproducibility and bad input (each failure leaves the ref and the cache
 * as they were).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildImages } from '../compiler/compile/build.js';
import { canonicalJson, sha256 } from '../compiler/compile/input-hash.js';
import { UserError } from '../compiler/diagnostics.js';
import { loadImages } from '../compiler/images.js';
import { STACK_TRACE } from './helpers/cli.js';
import {
  FIXTURE_EPOCH,
  makeRepo,
  ostreeCat,
  ostreeLs,
  ostreeMeta,
  requireTool,
  revParse,
  sh,
  shellTree,
  tmpEntries,
  type BuiltImage,
  type Entry,
  type Fixture,
  type Listing,
} from './helpers/build-fixture.js';

const REF = 'acme/full/x86_64/stable';
const SSH_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFixtureKeyForTreecastTests app@test';

/** A GVariant string as `ostree show --print-metadata-key` prints it, unquoted. */
const unquote = (s: string) => (/^'(.*)'$/s.exec(s)?.[1] ?? s);

const FULL_MANIFEST = `# yaml-language-server: $schema=../schemas/image.schema.json
name: full
ref: ${REF}
base: { source: tree, path: trees/base }
automatic-version-prefix: "7.0"
overlays: [overlays/app, overlays/more]
files:
  - { path: /etc/app.conf, source: files/app.conf, mode: "0640", owner: app, group: app }
  - { path: /usr/bin/helper, content: "#!/bin/sh\\necho helper\\n", mode: "4755", owner: root, group: root }
  - { path: /usr/libexec/app/sgid-tool, content: "#!/bin/sh\\n", mode: "2750", owner: alice, group: ops }
  - { path: /etc/svc.conf, content: "svc only exists in the image\\n", mode: "0600", owner: svc, group: svc }
  - { path: /etc/numeric.conf, content: "numeric ids\\n", mode: "0440", owner: 1234, group: "5678" }
  - { path: /usr/bin/vi, symlink: /usr/bin/busybox }
  - { path: /etc/app/release, symlink: ../../usr/lib/os-release }
  - { path: /etc/sudoers.d/app, content: "app ALL=(ALL) NOPASSWD: ALL\\n", mode: "0440" }
groups:
  - { name: app, gid: 2000 }
  - { name: ops }
users:
  - { name: app, uid: 2000, group: app, groups: [ops], ssh-authorized-keys: ["${SSH_KEY}"] }
  - { name: alice, groups: [ops], gecos: "Alice Example" }
units: { enable: [app.service], mask: [noisy.timer] }
default-target: multi-user.target
postprocess:
  - "cat /etc/app.conf > /etc/seen-by-postprocess"
  - "cat /proc/net/dev > /etc/netdev-seen-by-postprocess"
  - 'echo "$SOURCE_DATE_EPOCH $TREECAST_IMAGE" > /etc/build-env'
  - "mkfifo /var/lib/a-fifo"
metadata: { owner: platform-team }
outputs: { ostree: {} }
`;

function fullRepoFiles() {
  return {
    ...shellTree('trees/base'),
    '.gitignore': '.treecast/\npublic/\n',
    'files/app.conf': 'listen = 8080\nsecret = from-files-source\n',
    'overlays/app/etc/app/app.yaml': 'name: app\n',
    'overlays/app/etc/app/current': { symlink: 'app.yaml' },
    'overlays/app/etc/app/shadow-link': { symlink: '/etc/shadow' },
    'overlays/app/etc/app/up': { symlink: '../../..' },
    'overlays/app/etc/app/host-passwd': { symlink: '/etc/passwd' },
    'overlays/app/etc/app/datadir': { symlink: '/srv/appdata' },
    'overlays/app/usr/lib/app/run.sh': { content: '#!/bin/sh\nexec /usr/bin/busybox sleep infinity\n', mode: 0o750 },
    // Written *through* links of the first overlay: they must land inside the image.
    'overlays/more/etc/app/datadir/from-overlay': 'written through an absolute link\n',
    'overlays/more/etc/app/up/escaped-through-up': 'written through ../../..\n',
    'images/full.yaml': FULL_MANIFEST,
  };
}

const expectEntry = (ls: Listing, p: string, want: Partial<Entry>) => {
  const e = ls.get(p);
  expect(e, `${p} in the commit`).toBeDefined();
  expect(e, p).toMatchObject(want);
};

describe('compile: a tree-based image with overlays, files, users, units and postprocess', () => {
  let fx: Fixture;
  let head: string;
  let img: BuiltImage;
  let ls: Listing;
  const cat = (p: string, rev = img.commit) => ostreeCat(fx.ostreeRepo, rev, p);
  const meta = (key: string, rev = img.commit) => unquote(ostreeMeta(fx.ostreeRepo, rev, key));

  beforeAll(() => {
    for (const tool of ['ostree', 'bwrap', 'systemctl', 'git', 'dpkg-query', 'chattr']) requireTool(tool);
    expect(fs.existsSync('/srv/appdata/from-overlay'), 'the build host must not have /srv/appdata/from-overlay before the test').toBe(false);
    fx = makeRepo({ files: fullRepoFiles() });
    head = fx.head();
    const images = fx.build();
    expect(images).toHaveLength(1);
    img = images[0]!;
    ls = ostreeLs(fx.ostreeRepo, img.commit);
  });
  afterAll(() => fx?.cleanup());

  it('reports the build as --json: ref, commit on the ref, version, input hash, the steps in order', () => {
    expect(img).toMatchObject({ name: 'full', ref: REF, version: '7.0.1', cached: false });
    expect(img.commit).toMatch(/^[0-9a-f]{64}$/);
    expect(img.inputHash).toMatch(/^[0-9a-f]{64}$/);
    expect(revParse(fx.ostreeRepo, REF)).toBe(img.commit);
    expect(img.steps.map((s) => s.name)).toEqual(['base (tree)', 'overlays', 'files', 'users and groups', 'units', 'postprocess', 'initramfs', 'finalize', 'commit']);
    expect(tmpEntries(fx.cacheDir)).toEqual([]);
  });

  it('identity: os-release carries IMAGE_ID and IMAGE_VERSION; a commit with a kernel is marked bootable with its version (ostree.bootable, ostree.linux)', () => {
    const release = cat('/usr/lib/os-release').split('\n');
    expect(release).toContain('IMAGE_ID=full');
    expect(release).toContain('IMAGE_VERSION=7.0.1');
    expect(release).toContain('ID=treecast-fixture');
    expect(release.filter((l) => l.startsWith('IMAGE_ID='))).toHaveLength(1);
    expect(ostreeMeta(fx.ostreeRepo, img.commit, 'ostree.bootable')).toBe('true');
    expect(unquote(ostreeMeta(fx.ostreeRepo, img.commit, 'ostree.linux'))).toBe('6.1.0-test');
  });

  it('files[]: modes, owners (manifest names, image-only names, numeric ids), setuid/setgid, symlinks and contents exactly as declared', () => {
    // owner/group names declared in the manifest
    expectEntry(ls, '/usr/etc/app.conf', { type: 'f', mode: 0o640, uid: 2000, gid: 2000 });
    expect(cat('/usr/etc/app.conf')).toBe('listen = 8080\nsecret = from-files-source\n');
    // setuid root, setgid with a user and a group allocated by the manifest (alice 1000, ops 1000)
    expectEntry(ls, '/usr/bin/helper', { type: 'f', mode: 0o4755, uid: 0, gid: 0 });
    expect(cat('/usr/bin/helper')).toBe('#!/bin/sh\necho helper\n');
    expectEntry(ls, '/usr/libexec/app/sgid-tool', { type: 'f', mode: 0o2750, uid: 1000, gid: 1000 });
    // names that only the image's own /etc/passwd and /etc/group know (not the manifest, not the build host)
    expectEntry(ls, '/usr/etc/svc.conf', { type: 'f', mode: 0o600, uid: 999, gid: 999 });
    // numeric ids that exist nowhere
    expectEntry(ls, '/usr/etc/numeric.conf', { type: 'f', mode: 0o440, uid: 1234, gid: 5678 });
    expect(cat('/usr/etc/numeric.conf')).toBe('numeric ids\n');
    // symlinks are kept as written, absolute or relative
    expectEntry(ls, '/usr/bin/vi', { type: 'l', target: '/usr/bin/busybox' });
    expectEntry(ls, '/usr/etc/app/release', { type: 'l', target: '../../usr/lib/os-release' });
    // parent directories are created 0755 root
    expectEntry(ls, '/usr/etc/sudoers.d', { type: 'd', mode: 0o755, uid: 0, gid: 0 });
    expectEntry(ls, '/usr/etc/sudoers.d/app', { type: 'f', mode: 0o440, uid: 0, gid: 0 });
    expectEntry(ls, '/usr/libexec/app', { type: 'd', mode: 0o755, uid: 0, gid: 0 });
  });

  it('overlays: modes kept, owners root, relative links kept, links that point outside are copied as links and never followed', () => {
    expectEntry(ls, '/usr/etc/app/app.yaml', { type: 'f', mode: 0o644, uid: 0, gid: 0 });
    expectEntry(ls, '/usr/lib/app/run.sh', { type: 'f', mode: 0o750, uid: 0, gid: 0 });
    expectEntry(ls, '/usr/etc/app/current', { type: 'l', target: 'app.yaml' });
    expectEntry(ls, '/usr/etc/app/shadow-link', { type: 'l', target: '/etc/shadow' });
    expectEntry(ls, '/usr/etc/app/up', { type: 'l', target: '../../..' });
    expectEntry(ls, '/usr/etc/app/host-passwd', { type: 'l', target: '/etc/passwd' });
    expectEntry(ls, '/usr/etc/app/datadir', { type: 'l', target: '/srv/appdata' });
    // A later overlay writing through those links stays inside the image root, resolved like the image sees them.
    expectEntry(ls, '/usr/share/factory/var/srv/appdata/from-overlay', { type: 'f', mode: 0o644 });
    expect(cat('/usr/share/factory/var/srv/appdata/from-overlay')).toBe('written through an absolute link\n');
    expectEntry(ls, '/escaped-through-up', { type: 'f' });
    expect(fs.existsSync('/srv/appdata/from-overlay')).toBe(false);
    expect(fs.existsSync('/escaped-through-up')).toBe(false);
  });

  it('postprocess runs after files (sees the injected file), in a sandbox whose only network interface is lo, with SOURCE_DATE_EPOCH set', () => {
    expect(cat('/usr/etc/seen-by-postprocess')).toBe(cat('/usr/etc/app.conf'));
    const netdev = cat('/usr/etc/netdev-seen-by-postprocess');
    const ifaces = netdev
      .split('\n')
      .slice(2)
      .filter((l) => l.includes(':'))
      .map((l) => l.split(':')[0]!.trim());
    expect(ifaces).toEqual(['lo']);
    expect(netdev).not.toMatch(/eth|ens|enp|wl/);
    expect(cat('/usr/etc/build-env')).toBe(`${FIXTURE_EPOCH} full\n`);
  });

  it('users and groups: the right uid/gid in /usr/etc/passwd and group, supplementary groups, homes moved to the factory /var with tmpfiles.d lines, authorized_keys 0600 in .ssh 0700', () => {
    const passwd = cat('/usr/etc/passwd').split('\n');
    expect(passwd).toContain('app:x:2000:2000::/home/app:/bin/sh');
    expect(passwd).toContain('alice:x:1000:1001:Alice Example:/home/alice:/bin/sh');
    expect(passwd[0]).toBe('root:x:0:0:root:/root:/bin/sh'); // the image's own entries stay first and untouched
    const group = cat('/usr/etc/group').split('\n');
    expect(group).toContain('app:x:2000:');
    expect(group).toContain('ops:x:1000:app,alice');
    expect(group).toContain('alice:x:1001:');
    const shadow = cat('/usr/etc/shadow').split('\n');
    expect(shadow).toContain(`app:!:${Math.floor(FIXTURE_EPOCH / 86400)}:0:99999:7:::`);
    expectEntry(ls, '/usr/etc/shadow', { mode: 0o640, uid: 0, gid: 42 });
    expectEntry(ls, '/usr/etc/gshadow', { mode: 0o640, uid: 0, gid: 42 });
    expect(cat('/usr/etc/gshadow').split('\n')).toContain('ops:!::app,alice');

    // finalize moved /home into the factory /var; tmpfiles.d copies it back at boot
    expectEntry(ls, '/home', { type: 'l', target: 'var/home' });
    expectEntry(ls, '/usr/share/factory/var/home/app', { type: 'd', mode: 0o700, uid: 2000, gid: 2000 });
    expectEntry(ls, '/usr/share/factory/var/home/app/.ssh', { type: 'd', mode: 0o700, uid: 2000, gid: 2000 });
    expectEntry(ls, '/usr/share/factory/var/home/app/.ssh/authorized_keys', { type: 'f', mode: 0o600, uid: 2000, gid: 2000 });
    expect(cat('/usr/share/factory/var/home/app/.ssh/authorized_keys')).toBe(`${SSH_KEY}\n`);
    expectEntry(ls, '/usr/share/factory/var/home/alice', { type: 'd', mode: 0o700, uid: 1000, gid: 1001 });
    const tmpfiles = cat('/usr/lib/tmpfiles.d/treecast-var.conf').split('\n');
    expect(tmpfiles).toContain('d /var/home 0755 0 0 -');
    expect(tmpfiles).toContain('C /var/home/app - - - -');
    expect(tmpfiles).toContain('C /var/home/alice - - - -');
    expect(tmpfiles).toContain('C /var/log/fixture.log - - - -');
    expect(tmpfiles).toContain('d /var/roothome 0755 0 0 -');
    expect(tmpfiles).toContain('C /var/roothome/.profile - - - -');
    for (const d of ['opt', 'srv', 'mnt', 'usrlocal']) expect(tmpfiles.some((l) => l.startsWith(`d /var/${d} `))).toBe(true);
  });

  it('units: enable follows the unit [Install] section, mask links to /dev/null, default-target', () => {
    const wants = ls.get('/usr/etc/systemd/system/multi-user.target.wants/app.service');
    expect(wants?.type).toBe('l');
    expect(wants?.target).toMatch(/^\/(usr\/)?lib\/systemd\/system\/app\.service$/);
    expectEntry(ls, '/usr/etc/systemd/system/noisy.timer', { type: 'l', target: '/dev/null' });
    expectEntry(ls, '/usr/etc/systemd/system/default.target', { type: 'l', target: '/usr/lib/systemd/system/multi-user.target' });
    // The unit itself stays where the tree shipped it.
    expect(cat('/usr/lib/systemd/system/app.service')).toContain('WantedBy=multi-user.target');
  });

  it('finalize: /usr/etc and no /etc, empty /var, /home and /ostree links, empty machine-id, API dirs empty, no special files, kernel in /usr/lib/modules', () => {
    expectEntry(ls, '/usr/etc', { type: 'd', mode: 0o755 });
    expect(ls.has('/etc')).toBe(false);
    expectEntry(ls, '/var', { type: 'd' });
    expect([...ls.keys()].filter((p) => p.startsWith('/var/'))).toEqual([]);
    expectEntry(ls, '/home', { type: 'l', target: 'var/home' });
    expectEntry(ls, '/root', { type: 'l', target: 'var/roothome' });
    expectEntry(ls, '/srv', { type: 'l', target: 'var/srv' });
    expectEntry(ls, '/usr/local', { type: 'l', target: '../var/usrlocal' });
    expectEntry(ls, '/ostree', { type: 'l', target: 'sysroot/ostree' });
    expectEntry(ls, '/sysroot', { type: 'd' });
    expectEntry(ls, '/usr/etc/machine-id', { type: 'f', size: 0 });
    expectEntry(ls, '/tmp', { type: 'd', mode: 0o1777 });
    for (const d of ['/dev', '/proc', '/sys', '/run', '/tmp', '/sysroot']) {
      expect([...ls.keys()].filter((p) => p.startsWith(`${d}/`)), `${d} is empty`).toEqual([]);
    }
    // Only dirs, files and symlinks; the fifo made by postprocess was dropped.
    expect(new Set([...ls.values()].map((e) => e.type))).toEqual(new Set(['d', 'f', 'l']));
    expect([...ls.keys()].filter((p) => p.includes('a-fifo'))).toEqual([]);
    expect(img.steps.find((s) => s.name === 'finalize')?.detail).toMatch(/2 packages, kernel 6\.1\.0-test, 1 special files dropped/);
    expectEntry(ls, '/usr/lib/modules/6.1.0-test/vmlinuz', { type: 'f' });
    expectEntry(ls, '/usr/lib/modules/6.1.0-test/initramfs.img', { type: 'f' });
  });

  it('commit metadata: version, no ref binding, manifest digest, input hash, git commit, packages, source epoch as the commit time', () => {
    expect(meta('version')).toBe('7.0.1');
    // No ref binding: stream refs point at the same commit (promotion), and clients would refuse it there.
    expect(spawnSync('ostree', ['show', `--repo=${fx.ostreeRepo}`, img.commit, '--print-metadata-key=ostree.ref-binding']).status).not.toBe(0);
    const repo = fx.repo();
    const loaded = loadImages(repo).all.find((i) => i.manifest.name === 'full')!;
    expect(meta('treecast.manifest-sha256')).toBe(sha256(canonicalJson(loaded.manifest)));
    expect(meta('treecast.input-hash')).toBe(img.inputHash);
    expect(meta('treecast.git-commit')).toBe(head);
    expect(meta('treecast.name')).toBe('full');
    expect(meta('treecast.meta.owner')).toBe('platform-team');
    expect(meta('treecast.source-date-epoch')).toBe(String(FIXTURE_EPOCH));
    expect(ostreeMeta(fx.ostreeRepo, img.commit, 'treecast.packages')).toBe("[('busybox-static', '1:1.35.0-4+b3', 'amd64'), ('fixture-base', '1.0', 'all')]");
    const show = sh('ostree', ['show', `--repo=${fx.ostreeRepo}`, img.commit]);
    expect(show).toMatch(/^Date: +2024-01-01 00:00:00 \+0000$/m);
    expect(show).toMatch(/^ {4}full 7\.0\.1$/m);
  });

  it('ostree admin init-fs, os-init and deploy the built commit into a scratch sysroot; admin status shows the version', () => {
    const sysroot = path.join(path.dirname(fx.dir), 'sysroot');
    fs.mkdirSync(sysroot);
    sh('ostree', ['admin', 'init-fs', sysroot]);
    sh('ostree', ['admin', 'os-init', `--sysroot=${sysroot}`, 'treecast']);
    sh('ostree', [`--repo=${sysroot}/ostree/repo`, 'pull-local', fx.ostreeRepo, REF]);
    sh('ostree', ['admin', 'deploy', `--sysroot=${sysroot}`, '--os=treecast', '--karg=console=ttyS0', REF]);
    const status = sh('ostree', ['admin', 'status', `--sysroot=${sysroot}`]);
    expect(status).toContain(`treecast ${img.commit}.0`);
    expect(status).toMatch(/Version: 7\.0\.1/);
    const deployment = path.join(sysroot, 'ostree/deploy/treecast/deploy', `${img.commit}.0`);
    // The deployed /etc is the image's /usr/etc merged by ostree.
    expect(fs.readFileSync(path.join(deployment, 'etc/app.conf'), 'utf8')).toContain('from-files-source');
    expect(fs.statSync(path.join(deployment, 'usr/bin/helper')).mode & 0o7777).toBe(0o4755);
    const entries = fs.readdirSync(path.join(sysroot, 'boot/loader/entries'));
    expect(entries).toHaveLength(1);
    expect(fs.readFileSync(path.join(sysroot, 'boot/loader/entries', entries[0]!), 'utf8')).toMatch(/options .*console=ttyS0/);
  });

  it('an unchanged second build reports cached:true, does no work and keeps the artifacts directory', () => {
    const manifestJson = path.join(img.outDir, 'MANIFEST.json');
    const before = fs.statSync(manifestJson).mtimeMs;
    const [again] = fx.build();
    expect(again).toMatchObject({ cached: true, commit: img.commit, version: '7.0.1', inputHash: img.inputHash, steps: [], seconds: 0 });
    expect(sh('ostree', ['log', `--repo=${fx.ostreeRepo}`, REF]).match(/^commit /gm)).toHaveLength(1);
    expect(fs.statSync(manifestJson).mtimeMs).toBe(before);
    expect(tmpEntries(fx.cacheDir)).toEqual([]);
  });

  it('a forced rebuild makes the next version (prefix.2) on top of the first commit', () => {
    const [forced] = fx.build([], { force: true });
    expect(forced).toMatchObject({ cached: false, version: '7.0.2', inputHash: img.inputHash });
    expect(forced!.commit).not.toBe(img.commit);
    expect(meta('version', forced!.commit)).toBe('7.0.2');
    expect(sh('ostree', ['rev-parse', `--repo=${fx.ostreeRepo}`, `${forced!.commit}^`]).trim()).toBe(img.commit);
  });

  it('two clean builds of the same manifest (different cache dirs) give the same commit checksum', () => {
    const other = fx.newCacheDir();
    const [a] = fx.build([], { cacheDir: other });
    const b = fx.newCacheDir();
    const [c] = fx.build([], { cacheDir: b });
    expect(a!.commit).toBe(img.commit);
    expect(c!.commit).toBe(img.commit);
  });

  it('changing an overlay file changes the input hash and rebuilds; uncommitted changes give git-commit <head>-dirty', () => {
    fx.write('overlays/app/etc/app/app.yaml', 'name: app\nreplicas: 3\n');
    const [changed] = fx.build();
    expect(changed!.cached).toBe(false);
    expect(changed!.inputHash).not.toBe(img.inputHash);
    expect(changed!.version).toBe('7.0.3');
    expect(cat('/usr/etc/app/app.yaml', changed!.commit)).toBe('name: app\nreplicas: 3\n');
    expect(meta('treecast.git-commit', changed!.commit)).toBe(`${head}-dirty`);
    expect(meta('treecast.input-hash', changed!.commit)).toBe(changed!.inputHash);
    // Committing the change makes the tree clean again: the git commit is no longer -dirty.
    const newHead = fx.commit('replicas', FIXTURE_EPOCH);
    const [clean] = fx.build([], { force: true });
    expect(meta('treecast.git-commit', clean!.commit)).toBe(newHead);
  });
});

/** A small image for the failure tests: a good build first, then the manifest is broken. */
function smallRepo(extra: Record<string, import('./helpers/build-fixture.js').FileSpec> = {}) {
  const fx = makeRepo({
    prefix: 'bad',
    files: {
      ...shellTree('trees/base', { kernel: false }),
      'files/app.conf': 'x = 1\n',
      'images/small.yaml': smallManifest(''),
      ...extra,
    },
  });
  const [good] = fx.build();
  return { fx, good: good! };
}

function smallManifest(more: string): string {
  return `name: small
base: { source: tree, path: trees/base }
automatic-version-prefix: "1"
files:
  - { path: /etc/app.conf, source: files/app.conf }
${more}`;
}

/** The failure contract: exit 1, a clear message naming what failed, no stack, the ref unchanged, no temp dirs. */
function expectCleanFailure(fx: Fixture, r: { code: number | null; stderr: string }, goodCommit: string, message: RegExp) {
  expect(r.code, r.stderr).toBe(1);
  expect(r.stderr).toMatch(message);
  expect(r.stderr).not.toMatch(STACK_TRACE);
  expect(revParse(fx.ostreeRepo, 'small/x86_64/stable')).toBe(goodCommit);
  expect(tmpEntries(fx.cacheDir)).toEqual([]);
  expect(fs.readdirSync(path.join(fx.cacheDir, 'out/small')).filter((n) => n.startsWith('.staging'))).toEqual([]);
}

describe('bad input: a clear error naming the step or file, exit 1, the ref unchanged, no temp dirs left', () => {
  let fx: Fixture | undefined;
  afterAll(() => fx?.cleanup());
  const fresh = (extra?: Parameters<typeof smallRepo>[0]) => {
    fx?.cleanup();
    const r = smallRepo(extra);
    fx = r.fx;
    return r;
  };

  it('a postprocess script that fails: its output and postprocess[0] are named', () => {
    const { fx, good } = fresh();
    fx.write('images/small.yaml', smallManifest('postprocess:\n  - "echo checking-the-config; echo config-is-broken >&2; exit 3"\n  - "touch /etc/never"\n'));
    const r = fx.cli(['build']);
    expectCleanFailure(fx, r, good.commit, /building small: step postprocess: postprocess\[0\] failed with exit code 3/);
    expect(r.stderr).toContain('checking-the-config'); // what it printed on stdout
    expect(r.stderr).toContain('config-is-broken'); // and on stderr
    expect(r.stderr).not.toContain('postprocess[1]');
  });

  it('an owner name that the image does not have', () => {
    const { fx, good } = fresh();
    fx.write('images/small.yaml', smallManifest('  - { path: /etc/owned, content: "x\\n", owner: nosuchuser }\n'));
    const r = fx.cli(['build']);
    expectCleanFailure(fx, r, good.commit, /step files: files\[1\] \(\/etc\/owned\): owner "nosuchuser" does not exist in the image/);
  });

  it('a group name that the image does not have', () => {
    const { fx, good } = fresh();
    fx.write('images/small.yaml', smallManifest('  - { path: /etc/owned, content: "x\\n", owner: svc, group: nosuchgroup }\n'));
    const r = fx.cli(['build']);
    expectCleanFailure(fx, r, good.commit, /files\[1\] \(\/etc\/owned\): group "nosuchgroup" does not exist in the image/);
  });

  it('a source file deleted after validation (buildImages with a manifest validated before the delete)', async () => {
    const { fx, good } = fresh();
    const repo = fx.repo();
    const { all, selected } = loadImages(repo);
    fx.remove('files/app.conf');
    const err = await buildImages(repo, all, selected).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(UserError);
    expect((err as UserError).exitCode).toBe(1);
    expect((err as Error).message).toMatch(/building small: .*files\/app\.conf.*no longer exists in the repository/);
    expect(revParse(fx.ostreeRepo, 'small/x86_64/stable')).toBe(good.commit);
    expect(tmpEntries(fx.cacheDir)).toEqual([]);
  });

  it('an overlay that writes through a link to a build-host directory fails and writes nothing on the host', () => {
    const hostDir = fs.mkdtempSync(path.join(os.tmpdir(), 'treecast-host-target-'));
    try {
      const { fx, good } = fresh({
        'overlays/one/etc/evil': { symlink: hostDir },
        'overlays/two/etc/evil/pwned': 'this must never reach the build host\n',
      });
      fx.write('images/small.yaml', smallManifest('overlays: [overlays/one, overlays/two]\n'));
      const r = fx.cli(['build']);
      expectCleanFailure(fx, r, good.commit, /step overlays: applying overlay overlays\/two: \/etc\/evil is a symlink in the image that does not lead to a directory/);
      expect(fs.readdirSync(hostDir)).toEqual([]);
    } finally {
      fs.rmSync(hostDir, { recursive: true, force: true });
    }
  });

  it('a Debian package that does not exist (real mmdebstrap): the packages entry is located, nothing is committed', () => {
    requireTool('mmdebstrap');
    const fx = makeRepo({
      prefix: 'badpkg',
      files: {
        'images/deb.yaml': 'name: deb\nbase: { source: debian, suite: bookworm, variant: minbase }\npackages:\n  - hello\n  - treecast-no-such-package\n',
      },
    });
    try {
      const r = fx.cli(['build'], { timeoutMs: 600_000 });
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toContain('images/deb.yaml:5:5: packages[1]: the archive has no package "treecast-no-such-package"');
      expect(r.stderr).toMatch(/building deb: step base \(debian\): a package could not be found/);
      expect(r.stderr).not.toMatch(STACK_TRACE);
      expect(revParse(fx.ostreeRepo, 'deb/x86_64/stable')).toBeUndefined();
      expect(tmpEntries(fx.cacheDir)).toEqual([]);
    } finally {
      fx.cleanup();
    }
  });

  it('Ctrl-C during a postprocess step: exit 1 within seconds, "interrupted", the ref unchanged, <cache>/tmp empty', async () => {
    const { fx, good } = fresh();
    // A sleep of 60 s with a unique fraction, to find exactly this process afterwards.
    const sleep = `60.${String(process.pid).padStart(7, '0')}${String(Date.now() % 1000).padStart(3, '0')}`;
    fx.write('images/small.yaml', smallManifest(`postprocess:\n  - "touch /started-by-postprocess; sleep ${sleep}"\n`));
    const run = fx.spawnCli(['build']);
    const tmp = path.join(fx.cacheDir, 'tmp');
    // Postprocess writes to an overlay over the root (steps/layer.ts): the new file is in its upper dir.
    const started = () => fs.existsSync(tmp) && fs.readdirSync(tmp).some((d) => fs.existsSync(path.join(tmp, d, 'layer-postprocess/upper/started-by-postprocess')));
    // The sandboxed sleep, found by its unique argument.
    const sandboxed = () =>
      fs.readdirSync('/proc').filter((pid) => {
        if (!/^\d+$/.test(pid)) return false;
        try {
          return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(sleep);
        } catch {
          return false; // gone meanwhile
        }
      });
    const deadline = Date.now() + 60_000;
    while (!started() || sandboxed().length === 0) {
      if (Date.now() > deadline) throw new Error(`the postprocess step never started:\n${run.output().stderr}`);
      if (run.child.exitCode !== null) throw new Error(`the build ended before the postprocess step started:\n${run.output().stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const t0 = Date.now();
    run.child.kill('SIGINT');
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no exit 10 s after SIGINT:\n${run.output().stderr}`)), 10_000);
    });
    const r = await Promise.race([run.done, timeout])
      .catch((e: unknown) => {
        run.child.kill('SIGKILL');
        throw e;
      })
      .finally(() => clearTimeout(timer));
    const seconds = (Date.now() - t0) / 1000;
    expect(seconds).toBeLessThan(5);
    expect(r.signal).toBeNull();
    expectCleanFailure(fx, r, good.commit, /interrupt/);
    expect(r.stderr).toMatch(/SIGINT received/);
    expect(r.stderr).toMatch(/building small: interrupted; nothing was committed/);
    // The sandboxed sleep is gone with it (bwrap --die-with-parent).
    for (let i = 0; i < 40 && sandboxed().length; i++) await new Promise((r) => setTimeout(r, 50));
    expect(sandboxed()).toEqual([]);
  });
});
