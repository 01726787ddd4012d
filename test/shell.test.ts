/**
 * Issue #15: `treecast shell` and `treecast unpack` on a fixture image (the
 * host's static busybox as the image's tools, no Debian build). The shell
 * runs inside the image in the postprocess sandbox (no host files, no
 * network), its exit code is the command's, and the image (commit, checkout,
 * the objects ostree fsck checks) is unchanged afterwards with no scratch dir
 * left. A captured session, merged into the manifest and rebuilt, gives an
 * image that differs from the old one in exactly the paths the session
 * changed. unpack writes the booted layout and refuses a non-empty dir.
 * capture-plan.ts is also checked on plain listings.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import yaml from 'js-yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UserError } from '../compiler/diagnostics.js';
import { planCapture, type FsNode } from '../compiler/shell/capture-plan.js';
import { BIN } from './helpers/cli.js';
import { deployedLayout, makeRepo, ostreeLs, requireTool, revParse, sh, shellTree, tmpEntries, type Entry, type Fixture, type Listing } from './helpers/build-fixture.js';

const REF = 'acme/tiny/x86_64/stable';
const TINY = `name: tiny\nref: ${REF}\nautomatic-version-prefix: "1.0"\nbase: { source: tree, path: trees/base }\noutputs: { ostree: {} }\n`;

describe('treecast shell and unpack', () => {
  let fx: Fixture;
  let commit: string;
  let before: Listing;
  const canary = () => path.join(fx.dir, '..', 'host-canary');
  const sessions = () => (fs.existsSync(path.join(fx.cacheDir, 'shell')) ? fs.readdirSync(path.join(fx.cacheDir, 'shell')) : []);

  /** The CLI with --repo before the verb: everything after `--` is the command. */
  const cli = (args: string[], env: NodeJS.ProcessEnv = {}) => {
    const r = spawnSync(process.execPath, [BIN, '--repo', fx.dir, ...args], { cwd: fx.dir, env: { ...process.env, TREECAST_CACHE_DIR: fx.cacheDir, TREECAST_DEBUG: undefined, ...env }, encoding: 'utf8', timeout: 60_000, stdio: ['ignore', 'pipe', 'pipe'] });
    if (r.error) throw r.error;
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };

  beforeAll(() => {
    for (const t of ['ostree', 'bwrap', 'mount', 'setpriv']) requireTool(t);
    fx = makeRepo({ prefix: 'shell', files: { ...shellTree('trees/base', { kernel: false }), 'images/tiny.yaml': TINY } });
    commit = fx.build(['tiny'])[0]!.commit;
    before = ostreeLs(fx.ostreeRepo, commit);
    fs.writeFileSync(canary(), 'host only\n');
  }, 60_000);
  afterAll(() => fx?.cleanup());

  const unchanged = () => {
    expect(revParse(fx.ostreeRepo, REF)).toBe(commit);
    expect(ostreeLs(fx.ostreeRepo, commit)).toEqual(before);
    // fsck re-hashes every object: a write through a hardlinked checkout file would show here.
    sh('ostree', ['fsck', `--repo=${fx.ostreeRepo}`]);
    expect(sessions()).toEqual([]);
    expect(tmpEntries(fx.cacheDir)).toEqual([]);
  };

  it('runs the command inside the image, without the host or a network, and passes its exit code on', () => {
    const r = cli(['shell', 'tiny', '--', '/bin/sh', '-c', `cat /etc/hostname; cat ${canary()} || echo no-canary; cat /proc/net/dev; exit 7`]);
    expect(r.stderr).not.toMatch(/internal error/);
    expect(r.code).toBe(7);
    expect(r.stdout).toContain('fixture\n'); // /usr/etc/hostname of the image, shown at /etc
    expect(r.stdout).toContain('no-canary');
    expect(r.stdout).not.toContain('host only');
    const ifaces = [...r.stdout.matchAll(/^\s*([\w.-]+):/gm)].map((m) => m[1]);
    expect(ifaces).toEqual(['lo']); // a network namespace of its own
    unchanged();
  });

  it('writes in a session never reach the image', () => {
    const r = cli(['shell', `tiny@${fx.build(['tiny'])[0]!.version}`, '--', '/bin/sh', '-c', 'echo changed > /etc/hostname && chmod 0600 /etc/shadow && rm /usr/lib/os-release && cat /etc/hostname']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('changed\n');
    unchanged();
  });

  it('--capture: the overlay and manifest fragment rebuild to exactly the session\'s changes', () => {
    const session = [
      'set -e',
      'echo "edited by a shell session" > /etc/hostname',
      'chmod 0751 /usr/sbin/nologin',
      "printf 'added\\n' > /etc/added.conf && chmod 0640 /etc/added.conf && busybox chown 999:999 /etc/added.conf",
      'busybox ln -s added.conf /etc/added-link',
      'rm /usr/lib/systemd/system/noisy.timer',
      'mkdir -m 0700 /usr/share/private && echo secret > /usr/share/private/key',
      'mkdir -p /usr/share/empty-dir',
      'echo "shell noise" > /usr/share/.ash_history && mkdir -p /var/tmp && echo x > /var/tmp/scratch',
    ].join('\n');
    const r = cli(['shell', 'tiny', '--capture', path.join(fx.dir, 'overlays/captured'), '--', '/bin/sh', '-c', session]);
    expect(r.code, r.stderr).toBe(0);
    unchanged();
    const fragmentFile = path.join(fx.dir, 'overlays/captured.capture.yaml');
    const fragment = yaml.load(fs.readFileSync(fragmentFile, 'utf8')) as Record<string, unknown>;
    expect(r.stdout).toBe(fs.readFileSync(fragmentFile, 'utf8'));
    expect(fragment).toEqual({
      overlays: ['overlays/captured'],
      // git keeps only 0644/0755: other modes and owners are set by files: entries (overlays make root:root).
      files: [
        { path: '/etc/added.conf', source: 'overlays/captured/etc/added.conf', mode: '0640', owner: 999, group: 999 },
        { path: '/usr/sbin/nologin', source: 'overlays/captured/usr/sbin/nologin', mode: '0751', owner: 0, group: 0 },
      ],
      'remove-files': ['/usr/lib/systemd/system/noisy.timer'],
      postprocess: ["mkdir -p '/usr/share/empty-dir' && chmod 0755 '/usr/share/empty-dir'", "mkdir -p '/usr/share/private' && chmod 0700 '/usr/share/private'"],
    });
    const captured = (p: string) => path.join(fx.dir, 'overlays/captured', p);
    expect(fs.readFileSync(captured('etc/hostname'), 'utf8')).toBe('edited by a shell session\n');
    expect(fs.lstatSync(captured('usr/sbin/nologin')).mode & 0o7777).toBe(0o751);
    expect(fs.readlinkSync(captured('etc/added-link'))).toBe('added.conf');
    expect(fs.existsSync(captured('usr/share/.ash_history'))).toBe(false);
    expect(fs.existsSync(captured('var/tmp'))).toBe(false);

    // Merge the fragment into the manifest (it has none of these keys), commit, rebuild.
    fx.write('images/tiny.yaml', TINY + fs.readFileSync(fragmentFile, 'utf8'));
    fx.commit('capture of a shell session');
    try {
      rebuiltMatches(fragmentFile);
    } finally {
      // Back to the first version for the tests after this one.
      fx.write('images/tiny.yaml', TINY);
      fx.commit('back');
      commit = fx.build(['tiny'])[0]!.commit;
      before = ostreeLs(fx.ostreeRepo, commit);
    }
  }, 60_000);

  function rebuiltMatches(fragmentFile: string): void {
    const rebuilt = fx.build(['tiny'])[0]!;
    expect(rebuilt.commit).not.toBe(commit);
    const a = deployedLayout(ostreeLs(fx.ostreeRepo, commit));
    const b = deployedLayout(ostreeLs(fx.ostreeRepo, rebuilt.commit));
    const differs = (x?: Entry, y?: Entry) => JSON.stringify(x) !== JSON.stringify(y);
    const changed = [...new Set([...a.keys(), ...b.keys()])].filter((p) => differs(a.get(p), b.get(p))).sort();
    expect(changed).toEqual([
      '/etc/added-link', '/etc/added.conf', '/etc/hostname', '/usr/lib/systemd/system/noisy.timer',
      '/usr/sbin/nologin', '/usr/share/empty-dir', '/usr/share/private', '/usr/share/private/key',
    ]);
    // Content too (ostree diff compares checksums): /usr/lib/os-release carries the version (identity stamp), a new build always changes it.
    const diff = sh('ostree', ['diff', `--repo=${fx.ostreeRepo}`, commit, rebuilt.commit]).trim().split('\n').map((l) => l.trim().replace(/\s+/, ' ')).sort();
    expect(diff).toEqual([
      'A /usr/etc/added-link', 'A /usr/etc/added.conf', 'A /usr/share/empty-dir', 'A /usr/share/private', 'A /usr/share/private/key',
      'D /usr/lib/systemd/system/noisy.timer', 'M /usr/etc/hostname', 'M /usr/lib/os-release', 'M /usr/sbin/nologin',
    ]);
    expect(b.get('/etc/added.conf')).toMatchObject({ type: 'f', mode: 0o640, uid: 999, gid: 999 });
    expect(b.get('/etc/added-link')).toMatchObject({ type: 'l', target: 'added.conf' });
    expect(b.get('/usr/sbin/nologin')).toMatchObject({ type: 'f', mode: 0o751, uid: 0 });
    expect(b.get('/usr/share/private')).toMatchObject({ type: 'd', mode: 0o700 });
    expect(b.get('/usr/share/empty-dir')).toMatchObject({ type: 'd', mode: 0o755 });
    expect(b.get('/usr/lib/systemd/system/noisy.timer')).toBeUndefined();
    expect(sh('ostree', ['cat', `--repo=${fx.ostreeRepo}`, rebuilt.commit, '/usr/etc/hostname'])).toBe('edited by a shell session\n');
    expect(fs.readFileSync(fragmentFile, 'utf8')).toContain('# left out as session noise: /usr/share/.ash_history, /var/tmp/scratch');
  }

  it('opens a published version with --from (the archive repository: copied, not linked)', () => {
    const pub = path.join(fx.dir, '..', 'public');
    const p = cli(['publish', 'tiny'], { TREECAST_PUBLISH_DIR: pub });
    expect(p.code, p.stderr).toBe(0);
    // tiny@VERSION is looked up in the publish dir's images/ and repo/ only (an archive repository: a copy, no hardlinks).
    const version = fx.build(['tiny'])[0]!.version;
    const r = cli(['shell', `tiny@${version}`, '--from', pub, '--', '/bin/sh', '-c', 'cat /etc/hostname; echo x > /etc/hostname']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('fixture\n');
    expect(cli(['shell', 'tiny@0.0.0', '--from', pub, '--', 'true']).stderr).toContain(`"tiny@0.0.0" is not a built or published version in ${pub}`);
    expect(cli(['shell', 'tiny', '--from', fx.dir, '--', 'true']).stderr).toContain('not a publish dir');
    sh('ostree', ['fsck', `--repo=${path.join(pub, 'repo')}`]);
    unchanged();
  });

  /** A session of `sleep 60`, started in the background; resolves once it runs. */
  const background = async () => {
    const child = spawn(process.execPath, [BIN, '--repo', fx.dir, 'shell', 'tiny', '--', '/bin/sh', '-c', 'echo started; sleep 60'], {
      cwd: fx.dir,
      env: { ...process.env, TREECAST_CACHE_DIR: fx.cacheDir },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const closed = new Promise<number | null>((resolve) => child.on('close', resolve));
    const t0 = Date.now();
    while (!out.includes('started') && Date.now() - t0 < 20_000) await new Promise((r) => setTimeout(r, 50));
    expect(out).toContain('started');
    return { child, closed };
  };
  const mountsUnder = (dir: string) => fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.split(' ')[4]?.startsWith(dir));

  it('Ctrl-C ends the session, and the overlay and the checkout go with it; a build meanwhile leaves it alone', async () => {
    const t0 = Date.now();
    const { child, closed } = await background();
    expect(sessions()).toHaveLength(1); // the session's scratch dir, while it runs
    // A build sweeps the cache's tmp/ (and unmounts what is there): not the session's dir.
    fx.build(['tiny']);
    expect(sessions()).toHaveLength(1);
    expect(mountsUnder(fx.cacheDir)).toHaveLength(1);
    child.kill('SIGINT');
    expect(await closed).toBe(1);
    expect(Date.now() - t0).toBeLessThan(30_000);
    expect(mountsUnder(fx.cacheDir)).toEqual([]);
    unchanged();
  }, 40_000);

  it('a killed session (SIGKILL, no cleanup) is swept by the next one', async () => {
    const { child, closed } = await background();
    child.kill('SIGKILL');
    await closed;
    expect(sessions()).toHaveLength(1);
    expect(mountsUnder(fx.cacheDir)).toHaveLength(1);
    const r = cli(['shell', 'tiny', '--', 'true']);
    expect(r.code, r.stderr).toBe(0);
    expect(mountsUnder(fx.cacheDir)).toEqual([]);
    unchanged();
  }, 40_000);

  it('--capture refuses special files and a capture dir outside the repository', () => {
    const r = cli(['shell', 'tiny', '--capture', path.join(fx.dir, 'overlays/fifo'), '--', '/bin/sh', '-c', 'mkfifo /etc/pipe']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('cannot capture special files');
    expect(r.stderr).toContain('/etc/pipe');
    expect(fs.existsSync(path.join(fx.dir, 'overlays/fifo.capture.yaml'))).toBe(false);
    const out = cli(['shell', 'tiny', '--capture', path.join(fx.dir, '..', 'elsewhere'), '--', 'true']);
    expect(out.code).toBe(1);
    expect(out.stderr).toMatch(/must be a directory inside the repository/);
    unchanged();
  });

  it('unpack writes the booted layout and refuses a non-empty directory', () => {
    const dest = path.join(fx.dir, '..', 'unpacked');
    const r = cli(['unpack', 'tiny', dest]);
    expect(r.code, r.stderr).toBe(0);
    expect(fs.readFileSync(path.join(dest, 'etc/hostname'), 'utf8')).toBe('fixture\n');
    expect(fs.existsSync(path.join(dest, 'usr/etc'))).toBe(false);
    expect(fs.lstatSync(path.join(dest, 'etc/shadow')).mode & 0o7777).toBe(0o640);
    expect(fs.readlinkSync(path.join(dest, 'bin'))).toBe('usr/bin');
    // A copy, not hardlinks into the bare repository: editing it must not touch the cache.
    expect(fs.lstatSync(path.join(dest, 'usr/bin/busybox')).nlink).toBe(1);
    const names = (dir: string): string[] => fs.readdirSync(dir).sort();
    expect(names(dest)).toEqual([...deployedLayout(before).keys()].filter((p) => /^\/[^/]+$/.test(p)).map((p) => p.slice(1)).sort());
    const again = cli(['unpack', 'tiny', dest]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('exists and is not empty');
    unchanged();
  });
});

describe('capture plan (pure)', () => {
  const dir = (mode = 0o755, uid = 0): FsNode => ({ type: 'dir', mode, uid, gid: uid });
  const file = (mode = 0o644, uid = 0): FsNode => ({ type: 'file', mode, uid, gid: uid });
  const plan = (upper: [string, FsNode][], lower: Record<string, FsNode>, merged: Record<string, string[]> = {}, same: string[] = []) =>
    planCapture({
      upper,
      lower: (p) => lower[p],
      lowerNames: (d) => Object.keys(lower).filter((p) => p !== d && p.slice(0, p.lastIndexOf('/') || 1) === d).map((p) => p.slice(p.lastIndexOf('/') + 1)),
      merged: new Map(Object.entries(merged).map(([k, v]) => [k, new Set(v)])),
      sameContent: (p) => same.includes(p),
    });

  it('a file only touched is no change; history files are noise', () => {
    const p = plan([['/etc', dir()], ['/etc/a', file()], ['/etc/.bash_history', file(0o600)]], { '/': dir(), '/etc': dir(), '/etc/a': file() }, {}, ['/etc/a']);
    expect(p.copy).toEqual([]);
    expect(p.ignored).toEqual(['/etc/.bash_history']);
  });

  it('a directory replaced by a file is removed first; an opaque directory\'s old entries are removed', () => {
    const p = plan(
      [['/etc', dir()], ['/etc/x', file()], ['/opt', dir()], ['/opt/new', file()]],
      { '/': dir(), '/etc': dir(), '/etc/x': dir(), '/opt': dir(), '/opt/old': file() },
      { '/': ['etc', 'opt'], '/etc': ['x'], '/opt': ['new'] },
    );
    expect(p.remove).toEqual(['/opt/old', '/etc/x']);
    expect(p.copy.map((c) => c.path)).toEqual(['/etc', '/opt', '/etc/x', '/opt/new']);
  });

  it('refuses devices and glob characters in a deleted path', () => {
    expect(() => plan([['/dev0', { type: 'special', mode: 0o600, uid: 0, gid: 0 }]], { '/': dir() })).toThrow(UserError);
    expect(() => plan([], { '/': dir(), '/a*b': file() }, { '/': [] })).toThrow(/remove-files reads \* and \? as globs/);
  });
});
