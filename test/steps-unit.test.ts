/**
 * Unit tests of the pure pieces of the build: argv builders, globs, account
 * planning, in-root path resolution, versions, build and output order. Where
 * a step spawns a program, the exec wrapper is stubbed (setRunner) and the
 * argv it would run is checked; nothing here runs ostree, mmdebstrap or bwrap.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { planAccounts, type AccountFiles } from '../compiler/compile/accounts.js';
import { planOutputs } from '../compiler/compile/emit.js';
import { tupleArrayVariant, parseTupleArray } from '../compiler/compile/ostree.js';
import { buildOrder, nextVersion, planSteps, defaultVersionPrefix } from '../compiler/compile/plan.js';
import { copyTreeInto, mkdirInRoot, resolveInRoot } from '../compiler/compile/rootfs.js';
import { UserError } from '../compiler/diagnostics.js';
import { setPipeRunner, setRunner, type RunOptions, type RunResult, type Runner } from '../compiler/exec.js';
import type { ImageManifest } from '../compiler/manifest/types.js';
import type { ValidManifest } from '../compiler/manifest/validate.js';
import { diskKernelArgs, diskSize, fsUuidFor, parseSize, partitionTable } from '../compiler/outputs/disk.js';
import { outputRegistry } from '../compiler/outputs/index.js';
import { mksquashfsArgs } from '../compiler/outputs/squashfs.js';
import { compressArgs, tarArgs, tarball, tarballFile } from '../compiler/outputs/tarball.js';
import type { Repo } from '../compiler/repo.js';
import { aptArchiveCache, baseDebian, mmdebstrapArgs } from '../compiler/steps/base-debian.js';
import { XATTR_LIST_ARGS, commitArgs, commitTree } from '../compiler/steps/commit.js';
import { sandboxArgs } from '../compiler/steps/packages.js';
import { postprocess } from '../compiler/steps/postprocess.js';
import { globToRegExp } from '../compiler/steps/remove-files.js';
import type { BuildContext } from '../compiler/steps/step.js';
import { units } from '../compiler/steps/units.js';

const m = (over: Partial<ImageManifest> & Record<string, unknown>): ImageManifest => ({ name: 'img', base: { source: 'tree', path: 'tree' }, ...over }) as ImageManifest;

interface Call {
  cmd: string;
  args: readonly string[];
  opts: RunOptions;
}

/** Replace the exec wrapper's runner for one test; `reply` decides each result. */
function stubRunner(reply: (c: Call) => Partial<RunResult> = () => ({})): Call[] {
  const calls: Call[] = [];
  const runner: Runner = async (cmd, args, opts) => {
    const c = { cmd, args, opts };
    calls.push(c);
    return { exitCode: 0, stdout: '', stderr: '', ...reply(c) };
  };
  previous.push(setRunner(runner));
  return calls;
}
const previous: Runner[] = [];
afterEach(() => {
  while (previous.length) setRunner(previous.pop());
});

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'treecast-unit-'));
});
afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

function ctxFor(manifest: ImageManifest, over: Partial<BuildContext> = {}): BuildContext {
  const root = path.join(tmp, 'root');
  fs.mkdirSync(root, { recursive: true });
  return {
    repo: { root: tmp, config: {}, cacheDir: path.join(tmp, 'cache'), publishDir: path.join(tmp, 'public'), publicUrl: 'http://127.0.0.1:8080', arch: 'x86_64' } as Repo,
    image: { manifest } as ValidManifest,
    manifest,
    ref: `${manifest.name}/x86_64/stable`,
    root,
    workDir: tmp,
    localRepo: path.join(tmp, 'cache/repo'),
    epoch: 1_700_000_000,
    signal: new AbortController().signal,
    packages: [],
    refreshBase: false,
    ...over,
  } as BuildContext;
}

describe('mmdebstrapArgs', () => {
  it('without a mirror: no mirror argument, the host apt sources are used; suite and root are the last two', () => {
    const args = mmdebstrapArgs(m({ base: { source: 'debian' } }), '/r', '/cache/apt');
    expect(args.slice(-2)).toEqual(['bookworm', '/r']);
    expect(args.some((a) => /^(https?|file|copy):\/\//.test(a))).toBe(false);
    expect(args).toContain('--variant=minbase');
    expect(args).toContain('--components=main');
    expect(args).toContain('--mode=root');
    expect(args).toContain('--format=directory');
    expect(args.some((a) => a.startsWith('--include'))).toBe(false);
    expect(args).toContain('--setup-hook=sync-in /cache/apt /var/cache/apt/archives/');
    expect(args).toContain('--customize-hook=sync-out /var/cache/apt/archives /cache/apt');
  });

  it('with a mirror, variant, components and packages', () => {
    const args = mmdebstrapArgs(
      m({ base: { source: 'debian', suite: 'trixie', variant: 'apt', components: ['main', 'contrib', 'non-free-firmware'], mirror: 'http://deb.example.org/debian' }, packages: ['systemd-sysv', 'openssh-server'] }),
      '/r',
      '/c',
    );
    expect(args.slice(-3)).toEqual(['trixie', '/r', 'http://deb.example.org/debian']);
    expect(args).toContain('--variant=apt');
    expect(args).toContain('--components=main,contrib,non-free-firmware');
    expect(args.filter((a) => a.startsWith('--include'))).toEqual(['--include=systemd-sysv,openssh-server']);
    // options come before the positional arguments
    expect(args.findIndex((a) => a.startsWith('--include'))).toBeLessThan(args.indexOf('trixie'));
  });

  it('the step runs mmdebstrap through the exec wrapper with SOURCE_DATE_EPOCH', async () => {
    const calls = stubRunner();
    const ctx = ctxFor(m({ base: { source: 'debian', suite: 'bookworm' }, packages: ['less'] }));
    // The per-user package cache, pointed into this test's scratch dir.
    const saved = process.env.TREECAST_APT_CACHE;
    process.env.TREECAST_APT_CACHE = path.join(ctx.repo.cacheDir, 'apt-archives');
    try {
      expect(aptArchiveCache()).toBe(path.join(ctx.repo.cacheDir, 'apt-archives'));
      const detail = await baseDebian.run(ctx);
      const mm = calls.filter((c) => c.cmd === 'mmdebstrap');
      expect(mm).toHaveLength(1);
      expect(mm[0]!.args).toEqual(mmdebstrapArgs(ctx.manifest, ctx.root, aptArchiveCache()));
      expect(mm[0]!.opts.env).toMatchObject({ SOURCE_DATE_EPOCH: '1700000000', INITRD: 'No' });
      expect(mm[0]!.opts.signal).toBe(ctx.signal);
      expect(fs.statSync(aptArchiveCache()).isDirectory()).toBe(true);
      expect(detail).toMatch(/^bookworm\/minbase \+ 1 packages/);
    } finally {
      if (saved === undefined) delete process.env.TREECAST_APT_CACHE;
      else process.env.TREECAST_APT_CACHE = saved;
    }
  });
});

describe('commitArgs and commitTree', () => {
  const info = { version: '7.0.2', parent: 'a'.repeat(64), manifestSha256: 'b'.repeat(64), inputHash: 'c'.repeat(64), gitCommit: 'd'.repeat(40) + '-dirty' };

  it('commits the root to the ref at SOURCE_DATE_EPOCH with the treecast metadata', () => {
    const ctx = ctxFor(m({ name: 'edge', metadata: { owner: 'platform', tier: 2 } }), { ref: 'acme/edge/x86_64/stable' });
    ctx.packages = [
      { name: 'bash', version: '5.2-1', arch: 'amd64' },
      { name: "o'dd", version: '1', arch: 'all' },
    ];
    const args = commitArgs(ctx, info);
    expect(args[0]).toBe('commit');
    expect(args).toContain(`--repo=${ctx.localRepo}`);
    expect(args).toContain('--branch=acme/edge/x86_64/stable');
    expect(args).toContain(`--tree=dir=${ctx.root}`);
    expect(args).toContain('--timestamp=@1700000000');
    expect(args).toContain('--subject=edge 7.0.2');
    expect(args).toContain(`--parent=${info.parent}`);
    // The root's xattrs are stripped before (stripXattrs), so ostree may skip hardlinked files.
    expect(args).not.toContain('--no-xattrs');
    expect(args).toContain('--link-checkout-speedup');
    const meta = args.filter((a) => a.startsWith('--add-metadata-string=')).map((a) => a.slice('--add-metadata-string='.length));
    expect(meta).toEqual([
      'version=7.0.2',
      'treecast.name=edge',
      `treecast.manifest-sha256=${info.manifestSha256}`,
      `treecast.input-hash=${info.inputHash}`,
      `treecast.git-commit=${info.gitCommit}`,
      'treecast.source-date-epoch=1700000000',
      'treecast.meta.owner=platform',
      'treecast.meta.tier=2',
    ]);
    const pk = args.find((a) => a.startsWith('--add-metadata=treecast.packages='))!;
    expect(pk).toBe(`--add-metadata=treecast.packages=[('bash', '5.2-1', 'amd64'), ('o\\'dd', '1', 'all')]`);
    expect(parseTupleArray(pk.slice(pk.indexOf('=', 16) + 1))).toEqual([
      ['bash', '5.2-1', 'amd64'],
      ["o\\'dd", '1', 'all'],
    ]);
  });

  it('a first commit has no parent; no packages is a typed empty array', () => {
    const args = commitArgs(ctxFor(m({})), { ...info, parent: undefined });
    expect(args).toContain('--parent=none');
    expect(args).toContain('--add-metadata=treecast.packages=@a(sss) []');
    expect(args).not.toContain('--bootable');
    expect(commitArgs({ ...ctxFor(m({})), kernels: ['6.1.0-56-amd64'] }, info)).toContain('--bootable');
    expect(tupleArrayVariant([], 2)).toBe('@a(ss) []');
  });

  it('commitTree lists the root\'s xattrs, then runs ostree commit and returns the checksum it prints', async () => {
    const calls = stubRunner((c) => ({ stdout: c.cmd === 'ostree' ? `${'e'.repeat(64)}\n` : '' }));
    const ctx = ctxFor(m({}));
    await expect(commitTree(ctx, info)).resolves.toBe('e'.repeat(64));
    expect(calls.map((c) => [c.cmd, c.args])).toEqual([
      ['getfattr', XATTR_LIST_ARGS],
      ['ostree', commitArgs(ctx, info)],
    ]);
    expect(calls[0]!.opts.cwd).toBe(ctx.root);
  });

  it('a failing ostree commit is a CommandError naming the command and its stderr', async () => {
    stubRunner((c) => (c.cmd === 'ostree' ? { exitCode: 1, stderr: 'error: Writing content object: No space left on device\n' } : {}));
    await expect(commitTree(ctxFor(m({})), info)).rejects.toThrow(/command failed with exit code 1: ostree commit .*\n.*No space left on device/s);
  });
});

describe('mksquashfsArgs, tarArgs, compressors', () => {
  it('mksquashfs: reproducible flags, fixed times, the compressor and its level; no -processors (mksquashfs uses every CPU)', () => {
    const args = mksquashfsArgs(m({ outputs: { squashfs: { compression: 'zstd', 'compression-level': 19 } } }), '/tree', '/out/rootfs.squashfs', 1_700_000_000);
    expect(args.slice(0, 2)).toEqual(['/tree', '/out/rootfs.squashfs']);
    expect(args).toContain('-noappend');
    expect(args).toContain('-reproducible');
    expect(args).toContain('-no-xattrs');
    expect(args).not.toContain('-processors');
    const after = (flag: string) => args[args.indexOf(flag) + 1];
    expect(after('-comp')).toBe('zstd');
    expect(after('-Xcompression-level')).toBe('19');
    expect(after('-mkfs-time')).toBe('1700000000');
    expect(after('-all-time')).toBe('1700000000');
  });

  it('mksquashfs: zstd 3 by default (measured: docs/outputs.md); the older key `level` still counts; no level for xz, lz4, lzo', () => {
    expect(mksquashfsArgs(m({}), '/t', '/o', 1)).toEqual(expect.arrayContaining(['-comp', 'zstd', '-Xcompression-level', '3']));
    expect(mksquashfsArgs(m({ outputs: { squashfs: { level: 12 } } }), '/t', '/o', 1)).toEqual(expect.arrayContaining(['-Xcompression-level', '12']));
    expect(mksquashfsArgs(m({ outputs: { squashfs: { level: 12, 'compression-level': 5 } } }), '/t', '/o', 1)).toEqual(expect.arrayContaining(['-Xcompression-level', '5']));
    for (const compression of ['xz', 'lz4', 'lzo'] as const) {
      const args = mksquashfsArgs(m({ outputs: { squashfs: { compression, level: 5 } } }), '/t', '/o', 1);
      expect(args).toEqual(expect.arrayContaining(['-comp', compression]));
      expect(args, compression).not.toContain('-Xcompression-level');
    }
    expect(mksquashfsArgs(m({ outputs: { squashfs: { compression: 'gzip' } } }), '/t', '/o', 1)).not.toContain('-Xcompression-level');
    expect(mksquashfsArgs(m({ outputs: { squashfs: { compression: 'gzip', 'compression-level': 6 } } }), '/t', '/o', 1)).toEqual(expect.arrayContaining(['-Xcompression-level', '6']));
  });

  it('tar: sorted names, numeric owners, one mtime, no atime/ctime, the whole tree, to stdout', () => {
    const args = tarArgs('/tree', '-', 1_700_000_000);
    expect(args).toEqual(expect.arrayContaining(['--create', '--file=-', '--directory=/tree', '--sort=name', '--numeric-owner', '--mtime=@1700000000', '--format=posix']));
    expect(args.find((a) => a.startsWith('--pax-option='))).toMatch(/delete=atime,delete=ctime/);
    expect(args.at(-1)).toBe('.');
  });

  it('tarball names and compressors (stdin to stdout): zstd 3 by default, gzip -n gives the Digital Rebar .tgz, xz single-threaded', () => {
    expect(tarballFile(m({}))).toBe('rootfs.tar.zst');
    expect(tarballFile(m({ outputs: { tarball: { compression: 'gzip' } } }))).toBe('rootfs.tgz');
    expect(tarballFile(m({ outputs: { tarball: { compression: 'xz' } } }))).toBe('rootfs.tar.xz');
    expect(tarballFile(m({ outputs: { tarball: { compression: 'none' } } }))).toBe('rootfs.tar');
    expect(compressArgs('zstd')).toEqual(['zstd', ['-q', '-T0', '-3', '-c']]);
    expect(compressArgs('zstd', 19)).toEqual(['zstd', ['-q', '-T0', '-19', '-c']]);
    expect(compressArgs('gzip')).toEqual(['gzip', ['-n', '-6', '-c']]);
    expect(compressArgs('gzip', 9)).toEqual(['gzip', ['-n', '-9', '-c']]);
    expect(compressArgs('xz', 2)).toEqual(['xz', ['-T1', '-2', '-c']]);
  });

  it('the tarball streams tar | zstd into a dot file renamed when complete; a failing zstd is named, not tar', async () => {
    const pipes: [string, readonly string[], string, readonly string[], string][] = [];
    const prev = setPipeRunner(async ([c1, a1], [c2, a2], opts) => {
      pipes.push([c1, a1, c2, a2, opts.stdoutFile]);
      fs.writeFileSync(opts.stdoutFile, 'zstd bytes');
      return [{ exitCode: 0, stderr: '' }, { exitCode: 0, stderr: '' }];
    });
    try {
      const outDir = path.join(tmp, 'out');
      fs.mkdirSync(outDir);
      const manifest = m({ outputs: { tarball: { 'compression-level': 7 } } });
      const ctx = { name: 'img', manifest, version: '1', commit: 'c'.repeat(64), ref: 'img/x86_64/stable', repo: '/repo', epoch: 1, tree: '/tree', outDir, signal: new AbortController().signal, done: new Map() };
      const [art] = await tarball.write(ctx);
      expect(pipes).toEqual([['tar', tarArgs('/tree', '-', 1), 'zstd', ['-q', '-T0', '-7', '-c'], path.join(outDir, '.rootfs.tar.zst.partial')]]);
      expect(art).toMatchObject({ type: 'tarball', file: 'rootfs.tar.zst', size: 10 });
      expect(fs.readdirSync(outDir)).toEqual(['rootfs.tar.zst']);

      // tar only sees a broken pipe when zstd dies: the error names zstd, its exit code and its stderr.
      setPipeRunner(async () => [{ exitCode: 2, stderr: 'tar: -: Cannot write: Broken pipe\n' }, { exitCode: 1, stderr: 'zstd: error 70 : Write error : No space left on device\n' }]);
      await expect(tarball.write(ctx)).rejects.toThrow(/^zstd failed with exit code 1: tar .* \| zstd -q -T0 -7 -c > .*\.rootfs\.tar\.zst\.partial\n\s+zstd: error 70 : Write error : No space left on device$/);
      // tar failing on its own is tar's error.
      setPipeRunner(async () => [{ exitCode: 2, stderr: 'tar: ./x: Cannot open: Permission denied\n' }, { exitCode: 0, stderr: '' }]);
      await expect(tarball.write(ctx)).rejects.toThrow(/^tar failed with exit code 2: .*\n\s+tar: \.\/x: Cannot open: Permission denied$/);
    } finally {
      setPipeRunner(prev);
    }
  });
});

describe('globToRegExp (remove-files)', () => {
  const matches = (glob: string, p: string) => globToRegExp(glob).test(p);
  it('** crosses directories, * and ? stay within one part', () => {
    expect(matches('/usr/share/doc/**', '/usr/share/doc/bash/copyright')).toBe(true);
    expect(matches('/usr/share/doc/**', '/usr/share/doc/bash')).toBe(true);
    expect(matches('/usr/share/doc/**', '/usr/share/docs/x')).toBe(false);
    expect(matches('/usr/share/locale/*/LC_MESSAGES/*.mo', '/usr/share/locale/de/LC_MESSAGES/apt.mo')).toBe(true);
    expect(matches('/usr/share/locale/*/LC_MESSAGES/*.mo', '/usr/share/locale/de/x/LC_MESSAGES/apt.mo')).toBe(false);
    expect(matches('/usr/share/man/man?', '/usr/share/man/man1')).toBe(true);
    expect(matches('/usr/share/man/man?', '/usr/share/man/man10')).toBe(false);
    expect(matches('/**/*.pyc', '/usr/lib/python3/x/__pycache__/a.pyc')).toBe(true);
    expect(matches('/var/cache/apt/*.bin', '/var/cache/apt/pkgcache.bin')).toBe(true);
  });
  it('**/ stands for whole directories only: /usr/**/foo never removes /usr/lib/barfoo', () => {
    expect(matches('/usr/**/foo', '/usr/foo')).toBe(true);
    expect(matches('/usr/**/foo', '/usr/lib/x/foo')).toBe(true);
    expect(matches('/usr/**/foo', '/usr/lib/barfoo')).toBe(false);
    expect(matches('/usr/**/foo', '/usr/barfoo')).toBe(false);
  });
  it('regex metacharacters are literal', () => {
    expect(matches('/etc/a.b', '/etc/a.b')).toBe(true);
    expect(matches('/etc/a.b', '/etc/axb')).toBe(false);
    expect(matches('/opt/c++/(x)', '/opt/c++/(x)')).toBe(true);
    expect(matches('/etc/motd', '/etc/motd.d')).toBe(false);
  });
});

describe('planAccounts', () => {
  const image: AccountFiles = {
    passwd: 'root:x:0:0:root:/root:/bin/bash\nsvc:x:999:999::/nonexistent:/usr/sbin/nologin\n',
    group: 'root:x:0:\nsudo:x:27:\nsvc:x:999:\n',
    shadow: 'root:*:19000:0:99999:7:::\nsvc:!:19000::::::\n',
    gshadow: 'root:*::\nsudo:*::\nsvc:!::\n',
  };

  it('allocates uids and gids from 1000, keeps declared ids, adds supplementary groups to group and gshadow', () => {
    const plan = planAccounts(
      {
        groups: [{ name: 'app', gid: 2000 }, { name: 'ops' }],
        users: [
          { name: 'app', uid: 2000, group: 'app', groups: ['ops', 'sudo'], 'ssh-authorized-keys': ['ssh-ed25519 AAAA k'] },
          { name: 'bob', gecos: 'Bob', 'password-hash': '$6$x$y' },
          { name: 'carol', uid: 1500, groups: ['ops'] },
        ],
      },
      image,
      86_400 * 20_000 + 5,
      true,
    );
    expect(plan.users).toEqual([
      { name: 'app', uid: 2000, gid: 2000, home: '/home/app', shell: '/bin/bash', sshKeys: ['ssh-ed25519 AAAA k'] },
      // ops took gid 1000, so bob's own group gets the next free gid
      { name: 'bob', uid: 1000, gid: 1001, home: '/home/bob', shell: '/bin/bash', sshKeys: [] },
      // a user's own group gets gid = uid when it is free
      { name: 'carol', uid: 1500, gid: 1500, home: '/home/carol', shell: '/bin/bash', sshKeys: [] },
    ]);
    expect(plan.files.passwd.split('\n')).toEqual([
      'root:x:0:0:root:/root:/bin/bash',
      'svc:x:999:999::/nonexistent:/usr/sbin/nologin',
      'app:x:2000:2000::/home/app:/bin/bash',
      'bob:x:1000:1001:Bob:/home/bob:/bin/bash',
      'carol:x:1500:1500::/home/carol:/bin/bash',
      '',
    ]);
    expect(plan.files.group.split('\n')).toEqual(['root:x:0:', 'sudo:x:27:app', 'svc:x:999:', 'app:x:2000:', 'ops:x:1000:app,carol', 'bob:x:1001:', 'carol:x:1500:', '']);
    expect(plan.files.gshadow.split('\n')).toContain('ops:!::app,carol');
    expect(plan.files.gshadow.split('\n')).toContain('sudo:*::app');
    expect(plan.files.shadow.split('\n')).toContain('bob:$6$x$y:20000:0:99999:7:::');
    expect(plan.files.shadow.split('\n')).toContain('app:!:20000:0:99999:7:::');
    expect(plan.uidOf.get('svc')).toBe(999);
    expect(plan.uidOf.get('bob')).toBe(1000);
    expect(plan.gidOf.get('ops')).toBe(1000);
    expect(plan.gidOf.get('sudo')).toBe(27);
  });

  it('without bash the shell is /bin/sh; an empty image gets files with just the new accounts', () => {
    const plan = planAccounts({ users: [{ name: 'x' }] }, { passwd: '', group: '', shadow: '', gshadow: '' }, 0, false);
    expect(plan.files.passwd).toBe('x:x:1000:1000::/home/x:/bin/sh\n');
    expect(plan.files.group).toBe('x:x:1000:\n');
  });

  it('a declared uid or gid that the image already uses, or a user it already has, is a user error naming both', () => {
    expect(() => planAccounts({ users: [{ name: 'web', uid: 999 }] }, image, 0, true)).toThrow(/uid 999 for user "web" is already used in the image by "svc"/);
    expect(() => planAccounts({ users: [{ name: 'web', uid: 999 }] }, image, 0, true)).toThrow(UserError);
    expect(() => planAccounts({ groups: [{ name: 'web', gid: 27 }] }, image, 0, true)).toThrow(/gid 27 for group "web" is already used in the image by "sudo"/);
    expect(() => planAccounts({ users: [{ name: 'svc' }] }, image, 0, true)).toThrow(/user "svc" already exists in the base image/);
    expect(() => planAccounts({ users: [{ name: 'web', groups: ['nope'] }] }, image, 0, true)).toThrow(/user "web": group "nope" does not exist in the image/);
  });

  it('a group the image has keeps its members; declaring its gid renumbers it', () => {
    const plan = planAccounts({ groups: [{ name: 'svc', gid: 1999 }] }, image, 0, true);
    expect(plan.files.group.split('\n')).toContain('svc:x:1999:');
    expect(plan.gidOf.get('svc')).toBe(1999);
  });

  it('renumbering a group of the image onto a gid another group holds is refused (never two groups with one gid)', () => {
    expect(() => planAccounts({ groups: [{ name: 'svc', gid: 27 }] }, image, 0, true)).toThrow(/gid 27 for group "svc" is already used in the image by "sudo"/);
  });
});

describe('resolveInRoot, mkdirInRoot, copyTreeInto: nothing escapes the image root', () => {
  it('an absolute symlink /etc -> / resolves inside the root; writing through it stays inside', () => {
    const root = path.join(tmp, 'root');
    fs.mkdirSync(root);
    fs.symlinkSync('/', path.join(root, 'etc'));
    expect(resolveInRoot(root, '/etc/passwd')).toBe(path.join(root, 'passwd'));
    expect(resolveInRoot(root, '/etc')).toBe(path.join(root, 'etc')); // the last component is not followed
    expect(resolveInRoot(root, '/etc', true)).toBe(root);
    const dir = mkdirInRoot(root, '/etc/treecast-unit-test');
    expect(dir).toBe(path.join(root, 'treecast-unit-test'));
    fs.writeFileSync(resolveInRoot(root, '/etc/treecast-unit-test/x'), 'inside');
    expect(fs.readFileSync(path.join(root, 'treecast-unit-test/x'), 'utf8')).toBe('inside');
    expect(fs.existsSync('/treecast-unit-test')).toBe(false);
  });

  it('relative links and .. never climb above the root', () => {
    const root = path.join(tmp, 'root');
    fs.mkdirSync(path.join(root, 'a/b'), { recursive: true });
    fs.symlinkSync('../../../../../..', path.join(root, 'a/b/up'));
    fs.symlinkSync(tmp, path.join(root, 'hosttmp')); // an absolute host path is an image path
    expect(resolveInRoot(root, '/a/b/up/etc/shadow')).toBe(path.join(root, 'etc/shadow'));
    expect(resolveInRoot(root, '/../../etc/shadow')).toBe(path.join(root, 'etc/shadow'));
    expect(resolveInRoot(root, '/a/../../x')).toBe(path.join(root, 'x'));
    expect(resolveInRoot(root, '/hosttmp/root/secret')).toBe(path.join(root, tmp, 'root/secret'));
  });

  it('symlink loops are an error, not a hang', () => {
    const root = path.join(tmp, 'root');
    fs.mkdirSync(root);
    fs.symlinkSync('b', path.join(root, 'a'));
    fs.symlinkSync('a', path.join(root, 'b'));
    expect(() => resolveInRoot(root, '/a/x')).toThrow(/too many levels of symbolic links/);
  });

  it('copyTreeInto copies symlinks as links (never following them) and merges through merged-/usr links', () => {
    const src = path.join(tmp, 'overlay');
    const root = path.join(tmp, 'root');
    fs.mkdirSync(path.join(src, 'etc'), { recursive: true });
    fs.mkdirSync(path.join(src, 'lib/x'), { recursive: true });
    fs.symlinkSync('/etc/shadow', path.join(src, 'etc/shadow-link'));
    fs.symlinkSync('../../..', path.join(src, 'etc/up'));
    fs.writeFileSync(path.join(src, 'lib/x/f'), 'f');
    fs.mkdirSync(path.join(root, 'usr/lib'), { recursive: true });
    fs.symlinkSync('usr/lib', path.join(root, 'lib'));
    copyTreeInto(src, root);
    expect(fs.readlinkSync(path.join(root, 'etc/shadow-link'))).toBe('/etc/shadow');
    expect(fs.readlinkSync(path.join(root, 'etc/up'))).toBe('../../..');
    expect(fs.lstatSync(path.join(root, 'lib')).isSymbolicLink()).toBe(true);
    expect(fs.readFileSync(path.join(root, 'usr/lib/x/f'), 'utf8')).toBe('f');
  });
});

describe('nextVersion, defaultVersionPrefix', () => {
  it('counts up from the highest N used with the prefix', () => {
    expect(nextVersion('7.0', [])).toBe('7.0.1');
    expect(nextVersion('7.0', ['7.0.1'])).toBe('7.0.2');
    expect(nextVersion('7.0', ['7.0.3', '7.0.1', '7.0.10', '7.1.99', 'other'])).toBe('7.0.11');
    expect(nextVersion('1', ['10.5', '1.2.3', '1.x'])).toBe('1.1');
    expect(nextVersion('2026.11', ['2026.11.4', '2026.1.9'])).toBe('2026.11.5');
  });
  it('the default prefix is the UTC date of SOURCE_DATE_EPOCH', () => {
    expect(defaultVersionPrefix(1_704_067_200)).toBe('20240101');
    expect(defaultVersionPrefix(1_704_067_199)).toBe('20231231');
  });
});

describe('planning: steps, build order, outputs', () => {
  const img = (name: string, base: ImageManifest['base']) => ({ manifest: m({ name, base }) }) as ValidManifest;

  it('buildOrder puts every base image before the images derived from it, and pulls in unselected bases', () => {
    const base = img('base', { source: 'debian' });
    const mid = img('mid', { source: 'image', image: 'base' });
    const leaf = img('leaf', { source: 'image', image: 'mid' });
    const other = img('other', { source: 'tree', path: 't' });
    const all = [leaf, other, mid, base];
    expect(buildOrder(all, [leaf]).map((i) => i.manifest.name)).toEqual(['base', 'mid', 'leaf']);
    expect(buildOrder(all, all).map((i) => i.manifest.name)).toEqual(['base', 'mid', 'leaf', 'other']);
    expect(buildOrder(all, [mid, leaf, base]).map((i) => i.manifest.name)).toEqual(['base', 'mid', 'leaf']);
  });

  it('planSteps keeps the documented order and only what the manifest asks for', () => {
    const full = m({
      base: { source: 'image', image: 'b' },
      packages: ['x'],
      'remove-files': ['/a'],
      overlays: ['o'],
      files: [{ path: '/f', content: '' }],
      users: [{ name: 'u' }],
      units: { mask: ['a.timer'] },
      postprocess: ['true'],
    });
    expect(planSteps(full).map((s) => s.name)).toEqual(['base (image)', 'packages', 'remove-files', 'overlays', 'files', 'users and groups', 'units', 'postprocess', 'initramfs', 'finalize']);
    // initramfs is planned unless the manifest says `initramfs: false`; it does nothing in an image without a kernel and dracut.
    expect(planSteps(m({})).map((s) => s.name)).toEqual(['base (tree)', 'initramfs', 'finalize']);
    expect(planSteps(m({ initramfs: false })).map((s) => s.name)).toEqual(['base (tree)', 'finalize']);
    expect(planSteps(m({ base: { source: 'debian' }, packages: ['x'] })).map((s) => s.name)).toEqual(['base (debian)', 'initramfs', 'finalize']);
  });

  it('disk output: size from the sysroot or the manifest, kernel args, a UUID and label id from the commit', () => {
    const G = 1024 ** 3;
    const M = 1024 ** 2;
    expect(diskSize(m({ outputs: { disk: {} } }), 200 * M)).toBe(2 * G);
    expect(diskSize(m({ outputs: { disk: {} } }), 900 * M)).toBe(3 * G); // 2 x 900 MiB + 1 GiB = 2824 MiB -> 3 GiB
    expect(diskSize(m({ outputs: { disk: { size: '6G' } } }), 900 * M)).toBe(6 * G);
    expect(() => diskSize(m({ outputs: { disk: { size: '512M' } } }), 900 * M)).toThrow(/outputs.disk.size 512M is too small .* 900 MiB/);
    expect(() => parseSize('4T')).toThrow(/"4T" is not a size/);
    const c = 'ab'.repeat(32);
    const uuid = fsUuidFor(c);
    expect(uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(fsUuidFor(c)).toBe(uuid);
    expect(fsUuidFor('cd'.repeat(32))).not.toBe(uuid);
    expect(diskKernelArgs(m({ 'kernel-args': ['console=ttyS0'], outputs: { disk: { 'kernel-args': ['quiet'] } } }), uuid)).toEqual([`root=UUID=${uuid}`, 'rw', 'console=ttyS0', 'quiet']);
    expect(partitionTable(c)).toBe('label: dos\nlabel-id: 0xabababab\nunit: sectors\n\nstart=2048, type=83, bootable\n');
  });

  it('planOutputs: diskless pulls in squashfs and comes after it; ostree is not an artifact', () => {
    const reg = outputRegistry({ publicUrl: 'http://example.org', remote: 'treecast' });
    expect(planOutputs(m({ outputs: { ostree: {}, diskless: {} } }), reg).map((o) => o.name)).toEqual(['squashfs', 'diskless']);
    expect(planOutputs(m({ outputs: { diskless: {}, tarball: {}, squashfs: {} } }), reg).map((o) => o.name)).toEqual(['squashfs', 'diskless', 'tarball']);
    expect(planOutputs(m({ outputs: { ostree: {} } }), reg)).toEqual([]);
    expect(planOutputs(m({}), reg)).toEqual([]);
    expect(() => planOutputs(m({ outputs: { iso: {} } as ImageManifest['outputs'] }), reg)).toThrow(/unknown output "iso"/);
  });
});

describe('steps with the exec wrapper stubbed', () => {
  it('units: systemctl --root enable/disable; masks are /dev/null links written directly; default-target link', async () => {
    const calls = stubRunner();
    const ctx = ctxFor(m({ units: { enable: ['a.service', 'b.socket'], disable: ['c.service'], mask: ['d.timer'] }, 'default-target': 'multi-user.target' }));
    fs.mkdirSync(path.join(ctx.root, 'usr/lib/systemd/system'), { recursive: true });
    fs.writeFileSync(path.join(ctx.root, 'usr/lib/systemd/system/multi-user.target'), '');
    fs.mkdirSync(path.join(ctx.root, 'etc/systemd/system'), { recursive: true });
    fs.writeFileSync(path.join(ctx.root, 'etc/systemd/system/d.timer'), 'a local unit file, replaced by the mask');
    await expect(units.run(ctx)).resolves.toBe('2 enabled, 1 disabled, 1 masked');
    expect(calls.map((c) => [c.cmd, ...c.args])).toEqual([
      ['systemctl', `--root=${ctx.root}`, '--no-reload', 'enable', 'a.service', 'b.socket'],
      ['systemctl', `--root=${ctx.root}`, '--no-reload', 'disable', 'c.service'],
    ]);
    expect(fs.readlinkSync(path.join(ctx.root, 'etc/systemd/system/d.timer'))).toBe('/dev/null');
    expect(fs.readlinkSync(path.join(ctx.root, 'etc/systemd/system/default.target'))).toBe('/usr/lib/systemd/system/multi-user.target');
  });

  it('units: a default-target the image does not have is a user error', async () => {
    stubRunner();
    const ctx = ctxFor(m({ 'default-target': 'graphical.target' }));
    await expect(units.run(ctx)).rejects.toThrow(UserError);
    await expect(units.run(ctx)).rejects.toThrow(/default-target graphical.target does not exist in the image/);
  });

  it('postprocess: each snippet in bwrap without network, with / as the image root; a failure names postprocess[i] and its stderr', async () => {
    const calls = stubRunner((c) => (c.args.includes('exit 3') ? { exitCode: 3, stderr: 'boom: config missing\n' } : {}));
    const ctx = ctxFor(m({ postprocess: ['echo ok > /etc/x', 'exit 3', 'never run'] }));
    fs.mkdirSync(path.join(ctx.root, 'bin'));
    fs.writeFileSync(path.join(ctx.root, 'bin/sh'), '');
    const err = await postprocess.run(ctx).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toBe('postprocess[1] failed with exit code 3:\n    boom: config missing');
    // The scripts run on an overlay over the root (steps/layer.ts), mounted and unmounted around them.
    expect(calls.map((c) => c.cmd)).toEqual(['mount', 'bwrap', 'bwrap', 'umount']);
    const bw = calls.filter((c) => c.cmd === 'bwrap');
    const args = bw[0]!.args;
    expect(args[0]).toBe('--bind');
    expect(args[1]).toMatch(/layer-postprocess\/merged$/);
    expect(args[2]).toBe('/');
    expect(calls[0]!.args.join(' ')).toContain(`lowerdir=${ctx.root},`);
    expect(args).toContain('--unshare-net');
    expect(args).toContain('--die-with-parent');
    expect(args).not.toContain('/etc/resolv.conf');
    expect(args.slice(-3)).toEqual(['/bin/sh', '-ec', 'echo ok > /etc/x']);
    expect(bw[0]!.opts.signal).toBe(ctx.signal);
    expect(sandboxArgs('/r', { network: true })).toEqual(expect.arrayContaining(['--ro-bind', '/etc/resolv.conf', '/etc/resolv.conf']));
    expect(sandboxArgs('/r', { network: true })).not.toContain('--unshare-net');
  });

  it('postprocess: a failure shows what the script printed on stdout as well as on stderr', async () => {
    stubRunner((c) => (c.cmd === 'bwrap' ? { exitCode: 1, stdout: 'checking /etc/app.conf\nmissing key\n', stderr: '' } : {}));
    const ctx = ctxFor(m({ postprocess: ['grep -q key /etc/app.conf || { echo missing key; exit 1; }'] }));
    fs.mkdirSync(path.join(ctx.root, 'bin'));
    fs.writeFileSync(path.join(ctx.root, 'bin/sh'), '');
    await expect(postprocess.run(ctx)).rejects.toThrow('postprocess[0] failed with exit code 1:\n    checking /etc/app.conf\n    missing key');
  });

  it('postprocess: an image without /bin/sh is a user error before anything runs', async () => {
    const calls = stubRunner();
    const ctx = ctxFor(m({ postprocess: ['true'] }));
    await expect(postprocess.run(ctx)).rejects.toThrow(/postprocess needs \/bin\/sh in the image/);
    expect(calls).toEqual([]);
  });
});

describe('initramfs cache key', () => {
  it('ignores the IMAGE_ID/IMAGE_VERSION stamp in os-release (a derived image keeps its base initramfs), not the rest of it', async () => {
    const { initramfsKey } = await import('../compiler/steps/initramfs.js');
    const { stampOsRelease } = await import('../compiler/steps/finalize.js');
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'treecast-ikey-'));
    try {
      fs.mkdirSync(path.join(root, 'usr/lib'), { recursive: true });
      fs.writeFileSync(path.join(root, 'usr/lib/os-release'), 'ID=debian\nVERSION_ID="12"\n', { mode: 0o644 });
      const before = initramfsKey(root, '6.1.0-test', ['--no-hostonly']);
      stampOsRelease(root, 'edge-host', '2026.11.3');
      expect(fs.readFileSync(path.join(root, 'usr/lib/os-release'), 'utf8')).toBe('ID=debian\nVERSION_ID="12"\nIMAGE_ID=edge-host\nIMAGE_VERSION=2026.11.3\n');
      expect(initramfsKey(root, '6.1.0-test', ['--no-hostonly'])).toBe(before);
      stampOsRelease(root, 'edge-host', '2026.11.4');
      expect(initramfsKey(root, '6.1.0-test', ['--no-hostonly'])).toBe(before);
      fs.writeFileSync(path.join(root, 'usr/lib/os-release'), 'ID=debian\nVERSION_ID="13"\n');
      expect(initramfsKey(root, '6.1.0-test', ['--no-hostonly'])).not.toBe(before);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});
