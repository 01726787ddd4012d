/**
 * Hostile postprocess scripts against the sandbox (compiler/steps/sandbox.ts),
 * built with the real CLI, real bwrap and real ostree: each probe records what
 * it could do into the image, and the test reads the result out of the commit.
 * Nothing here writes to /proc/sysrq-trigger or any other host knob: the
 * probes only look (stat, mount flags), or write where a success would be
 * harmless (the sandbox's own uts-namespaced hostname).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { setRunner, type RunOptions, type Runner } from '../../compiler/exec.js';
import { packagesOnImage } from '../../compiler/steps/packages.js';
import { postprocess } from '../../compiler/steps/postprocess.js';
import {
  HELPER_DIR,
  PROC_EMPTY_DIRS,
  PROC_MASKED_FILES,
  PROC_READONLY_DIRS,
  SANDBOX_CAPS,
  SANDBOX_PATH,
  hostCapHelper,
  hostProcEntries,
  sandboxArgs,
  type CapHelper,
} from '../../compiler/steps/sandbox.js';
import type { BuildContext } from '../../compiler/steps/step.js';
import { STACK_TRACE } from '../helpers/cli.js';
import { FIXTURE_EPOCH, makeRepo, ostreeCat, ostreeLs, requireTool, shellTree, tmpEntries, type Fixture } from '../helpers/build-fixture.js';
import { makeCanaries, SECRET_TEXT, type Canaries } from './canary.js';

/** Bit numbers from linux/capability.h. */
const CAP = {
  CHOWN: 0, DAC_OVERRIDE: 1, DAC_READ_SEARCH: 2, FOWNER: 3, FSETID: 4, KILL: 5, SETGID: 6, SETUID: 7, SETPCAP: 8,
  LINUX_IMMUTABLE: 9, NET_BIND_SERVICE: 10, NET_BROADCAST: 11, NET_ADMIN: 12, NET_RAW: 13, IPC_LOCK: 14, IPC_OWNER: 15,
  SYS_MODULE: 16, SYS_RAWIO: 17, SYS_CHROOT: 18, SYS_PTRACE: 19, SYS_PACCT: 20, SYS_ADMIN: 21, SYS_BOOT: 22, SYS_NICE: 23,
  SYS_RESOURCE: 24, SYS_TIME: 25, SYS_TTY_CONFIG: 26, MKNOD: 27, LEASE: 28, AUDIT_WRITE: 29, AUDIT_CONTROL: 30, SETFCAP: 31,
  MAC_OVERRIDE: 32, MAC_ADMIN: 33, SYSLOG: 34, WAKE_ALARM: 35, BLOCK_SUSPEND: 36, AUDIT_READ: 37, PERFMON: 38, BPF: 39, CHECKPOINT_RESTORE: 40,
} as const;
type CapName = keyof typeof CAP;

const DANGEROUS: CapName[] = [
  'SYS_ADMIN', 'MKNOD', 'SYS_MODULE', 'SYS_RAWIO', 'NET_ADMIN', 'SYS_PTRACE', 'SYS_BOOT', 'SYS_TIME', 'NET_RAW', 'SETFCAP',
  'MAC_OVERRIDE', 'MAC_ADMIN', 'BPF', 'PERFMON', 'SYS_CHROOT', 'SETPCAP', 'LINUX_IMMUTABLE', 'SYSLOG', 'AUDIT_CONTROL',
  'SYS_PACCT', 'SYS_NICE', 'SYS_RESOURCE', 'IPC_OWNER', 'CHECKPOINT_RESTORE', 'NET_BIND_SERVICE', 'SYS_TTY_CONFIG',
];
const KEPT = SANDBOX_CAPS.map((c) => c.replace(/^CAP_/, '') as CapName);

/** Names of the bits set in a /proc/<pid>/status capability mask. */
function capsIn(hex: string): CapName[] {
  const mask = BigInt(`0x${hex}`);
  return (Object.keys(CAP) as CapName[]).filter((n) => (mask >> BigInt(CAP[n])) & 1n);
}

function statusField(status: string, field: string): string {
  const m = new RegExp(`^${field}:\\s*(.+)$`, 'm').exec(status);
  if (!m) throw new Error(`no ${field} in:\n${status}`);
  return m[1]!;
}

const SECRET_VALUE = `treecast-ci-token-${process.pid}-do-not-leak`;

describe('hostile postprocess scripts: what the sandbox lets them do', () => {
  let fx: Fixture;
  let canaries: Canaries;
  let server: net.Server;
  let connections = 0;
  let port = 0;
  let commit: string;
  let stderr: string;
  let probeScript: string;
  const probe = (name: string) => ostreeCat(fx.ostreeRepo, commit, `/usr/etc/probe/${name}`);

  beforeAll(async () => {
    for (const tool of ['bwrap', 'ostree', 'git', 'setpriv']) requireTool(tool);
    canaries = makeCanaries();
    server = net.createServer((s) => {
      connections++;
      s.end('hello from the build host\n');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as net.AddressInfo).port;

    // `a && echo 0 > f || echo $? > f`: record the exit status without tripping sh -e.
    const status = (cmd: string, file: string) => `${cmd} 2>/etc/probe/${file}.err && echo 0 > /etc/probe/${file} || echo $? > /etc/probe/${file}`;
    const masks = [...PROC_MASKED_FILES].join(' ');
    probeScript = `#!/bin/sh\n${status('{ echo tampered >> /tmp/.treecast-postprocess; }', 'script-write')}\n${status('cat /proc/self/status > /etc/probe/script-status', 'script-status-ok')}\n`;
    const snippets = [
      'mkdir -p /etc/probe',
      'cat /proc/self/status > /etc/probe/status',
      'env > /etc/probe/env',
      'ls -a / > /etc/probe/root-ls',
      'cat /proc/self/mounts > /etc/probe/mounts',
      'busybox stat -c %a /tmp > /etc/probe/tmp-mode',
      status('busybox mknod /dev/x c 1 1', 'mknod-dev'),
      status('busybox mknod /tmp/y b 8 0', 'mknod-block'),
      'mkdir -p /mnt',
      status('busybox mount -t tmpfs none /mnt', 'mount-tmpfs'),
      status('busybox mount -o remount,rw /proc/sys', 'remount-proc-sys'),
      // uts-namespaced: even a success would only rename the sandbox.
      status('{ echo probe > /proc/sys/kernel/hostname; }', 'write-proc-sys'),
      `for f in ${masks}; do if [ -e $f ]; then busybox stat -c "$f %F %t:%T" $f; else echo "$f absent"; fi; done > /etc/probe/masks`,
      status(`busybox timeout 5 busybox nc 127.0.0.1 ${port} </dev/null`, 'nc'),
      status(`busybox wget -T 3 -q -O /etc/probe/wget-body http://127.0.0.1:${port}/`, 'wget'),
      status(`cat ${canaries.secret} > /etc/probe/secret-copy`, 'cat-secret'),
      status(`ls ${canaries.dir}`, 'ls-canaries'),
      status('ls /sys/kernel', 'ls-sys'),
      // busybox setpriv reports the failed raise and runs the program anyway: what counts is what cat then has.
      'busybox setpriv --ambient-caps +sys_admin,+mknod cat /proc/self/status > /etc/probe/raise-ambient-status',
      'mkdir -p /usr/lib/probe-suid && cp /usr/bin/busybox /usr/lib/probe-suid/cat && chmod 4755 /usr/lib/probe-suid/cat',
      '/usr/lib/probe-suid/cat /proc/self/status > /etc/probe/setuid-status',
    ];
    fx = makeRepo({
      prefix: 'sandbox',
      files: {
        ...shellTree('trees/base'),
        'scripts/probe.sh': { content: probeScript, mode: 0o755 },
        'images/probe.yaml': [
          'name: probe',
          'base: { source: tree, path: trees/base }',
          'postprocess:',
          ...snippets.map((s) => `  - ${JSON.stringify(s)}`),
          'postprocess-script: scripts/probe.sh',
          'outputs: { ostree: {} }',
          '',
        ].join('\n'),
      },
    });
    const r = fx.cli(['build', '--json'], { env: { TREECAST_TEST_SECRET: SECRET_VALUE, GITHUB_TOKEN: SECRET_VALUE } });
    stderr = r.stderr;
    expect(r.code, r.stderr).toBe(0);
    commit = (JSON.parse(r.stdout) as { images: { commit: string }[] }).images[0]!.commit;
    // A connection that reached the backlog while spawnSync blocked us is accepted now.
    await new Promise((resolve) => setTimeout(resolve, 200));
  }, 180_000);

  afterAll(async () => {
    fx?.cleanup();
    canaries?.cleanup();
    await new Promise((resolve) => server?.close(resolve));
  });

  it('keeps uid 0 but only the package-installation capabilities, in the effective AND the bounding set; no_new_privs is on', () => {
    for (const file of ['status', 'script-status', 'raise-ambient-status', 'setuid-status']) {
      const st = probe(file);
      expect(statusField(st, 'Uid').split(/\s+/)[0]).toBe('0');
      for (const set of ['CapEff', 'CapPrm', 'CapBnd', 'CapAmb', 'CapInh']) {
        const caps = capsIn(statusField(st, set));
        for (const bad of DANGEROUS) expect(caps, `${file} ${set} has CAP_${bad}`).not.toContain(bad);
        expect(caps.every((c) => KEPT.includes(c)), `${file} ${set}: ${caps.join(',')}`).toBe(true);
      }
      // The kept set is really there (dpkg and apt need it), effective and bounded.
      expect(capsIn(statusField(st, 'CapEff')).sort()).toEqual([...KEPT].sort());
      expect(capsIn(statusField(st, 'CapBnd')).sort()).toEqual([...KEPT].sort());
      expect(statusField(st, 'NoNewPrivs')).toBe('1');
    }
  });

  it('cannot make device nodes, mount, or remount /proc/sys writable', () => {
    expect(probe('mknod-dev').trim()).not.toBe('0');
    expect(probe('mknod-dev.err')).toMatch(/Operation not permitted/);
    expect(probe('mknod-block').trim()).not.toBe('0');
    expect(probe('mknod-block.err')).toMatch(/Operation not permitted/);
    expect(probe('mount-tmpfs').trim()).not.toBe('0');
    expect(probe('remount-proc-sys').trim()).not.toBe('0');
    expect(probe('write-proc-sys').trim()).not.toBe('0');
    expect(probe('write-proc-sys.err')).toMatch(/Read-only file system/);
    const mounts = probe('mounts').split('\n').filter(Boolean).map((l) => l.split(' '));
    expect(mounts.find((m) => m[1] === '/mnt'), 'a tmpfs on /mnt').toBeUndefined();
  });

  it('the host-global /proc knobs are masked (/dev/null over the files, read-only dirs); /sys is not there', () => {
    const host = hostProcEntries();
    const masks = new Map(probe('masks').split('\n').filter(Boolean).map((l) => [l.split(' ')[0]!, l.slice(l.indexOf(' ') + 1)]));
    expect([...masks.keys()].sort()).toEqual([...PROC_MASKED_FILES].sort());
    for (const f of PROC_MASKED_FILES) {
      // Never written to: only its file type and device number are looked at.
      expect(masks.get(f), f).toBe(host.has(f) ? 'character special file 1:3' : 'absent');
    }
    const mounts = probe('mounts').split('\n').filter(Boolean).map((l) => l.split(' '));
    for (const d of [...PROC_READONLY_DIRS, ...PROC_EMPTY_DIRS].filter((p) => host.has(p))) {
      const m = mounts.filter((x) => x[1] === d).at(-1);
      expect(m, `${d} is a mount of its own`).toBeDefined();
      expect(m![3]!.split(','), `${d} mount options`).toContain('ro');
    }
    expect(mounts.some((m) => m[1] === '/sys' || m[1]!.startsWith('/sys/'))).toBe(false);
    expect(probe('ls-sys').trim()).not.toBe('0');
  });

  it('has no network: a listener on the host loopback sees no connection, nc and wget fail', () => {
    expect(probe('nc').trim()).not.toBe('0');
    expect(probe('wget').trim()).not.toBe('0');
    expect(connections).toBe(0);
    const ls = ostreeLs(fx.ostreeRepo, commit, '/usr/etc/probe');
    expect(ls.get('/usr/etc/probe/wget-body')?.size ?? 0).toBe(0);
  });

  it('sees exactly the documented environment: nothing of the CLI environment (the CI token) leaks', () => {
    const env = Object.fromEntries(
      probe('env')
        .split('\n')
        .filter(Boolean)
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    expect(env).toEqual({
      PATH: SANDBOX_PATH,
      HOME: '/root',
      LANG: 'C.UTF-8',
      LC_ALL: 'C.UTF-8',
      SOURCE_DATE_EPOCH: String(FIXTURE_EPOCH),
      TREECAST_IMAGE: 'probe',
      // set by sh itself
      PWD: '/',
      SHLVL: '1',
    });
    const everything = spawnSync('ostree', ['ls', `--repo=${fx.ostreeRepo}`, '-R', commit, '/usr/etc/probe'], { encoding: 'utf8' }).stdout;
    for (const f of everything.split('\n').filter((l) => l.startsWith('-')).map((l) => l.split(' ').at(-1)!)) {
      expect(ostreeCat(fx.ostreeRepo, commit, f), f).not.toContain(SECRET_VALUE);
    }
  });

  it('sees only the image: / is the image top level, host files and the canaries are not there and stay unchanged', () => {
    const inside = probe('root-ls').split('\n').filter((n) => n && n !== '.' && n !== '..');
    const tree = new Set(Object.keys(shellTree('t')).map((k) => k.split('/')[1]!));
    // bwrap makes the mount points it needs in the image root; finalize empties them.
    expect(inside.sort()).toEqual([...new Set([...tree, 'dev', 'proc', 'run'])].sort());
    expect(probe('cat-secret').trim()).not.toBe('0');
    expect(probe('ls-canaries').trim()).not.toBe('0');
    expect(probe('tmp-mode').trim()).toBe('1777');
    expect(probe('secret-copy')).not.toContain(SECRET_TEXT.trim());
    canaries.assertUnchanged();
    // The helper's files are in the /run tmpfs, never in the image.
    expect([...ostreeLs(fx.ostreeRepo, commit).keys()].filter((p) => p.includes('treecast-sandbox'))).toEqual([]);
  });

  it('the postprocess-script is bound read-only: it cannot rewrite itself', () => {
    expect(probe('script-write').trim()).not.toBe('0');
    expect(probe('script-status-ok').trim()).toBe('0');
    expect(probe('script-write.err')).toMatch(/Read-only file system/);
    expect(fs.readFileSync(path.join(fx.dir, 'scripts/probe.sh'), 'utf8')).toBe(probeScript);
    expect(stderr).not.toMatch(STACK_TRACE);
  });
});

describe('postprocess-timeout: a script that runs too long is killed with everything it started', () => {
  let fx: Fixture;
  let canaries: Canaries;
  beforeAll(() => {
    for (const tool of ['bwrap', 'ostree', 'git', 'pgrep']) requireTool(tool);
    canaries = makeCanaries();
  });
  afterAll(() => {
    fx?.cleanup();
    canaries?.cleanup();
  });

  it('exit 1 with a located error, no process left (a setsid child and a background one included), <cache>/tmp empty', () => {
    const marker = `77.${String(process.pid).padStart(7, '0')}${String(Date.now() % 1000).padStart(3, '0')}`;
    fx = makeRepo({
      prefix: 'sandbox-timeout',
      files: {
        ...shellTree('trees/base'),
        'images/slow.yaml': [
          'name: slow',
          'base: { source: tree, path: trees/base }',
          'postprocess-timeout: 2',
          'postprocess:',
          `  - "busybox setsid busybox sleep ${marker}1 & busybox sleep ${marker}2 & busybox sleep ${marker}3"`,
          '  - "touch /etc/never"',
          'outputs: { ostree: {} }',
          '',
        ].join('\n'),
      },
    });
    const t0 = Date.now();
    const r = fx.cli(['build']);
    const seconds = (Date.now() - t0) / 1000;
    expect(r.code, r.stderr).toBe(1);
    expect(seconds).toBeLessThan(30);
    expect(r.stderr).toContain('postprocess[0] ran longer than postprocess-timeout (2 s) and was killed');
    expect(r.stderr).toMatch(/images\/slow\.yaml:5:5: postprocess\[0\]: ran longer than postprocess-timeout \(2 s\) and was killed/);
    expect(r.stderr).not.toContain('postprocess[1]');
    expect(r.stderr).not.toMatch(STACK_TRACE);
    const left = spawnSync('pgrep', ['-f', marker], { encoding: 'utf8' });
    expect(left.stdout, 'processes left behind').toBe('');
    expect(left.status).toBe(1);
    expect(tmpEntries(fx.cacheDir)).toEqual([]);
    canaries.assertUnchanged();
  }, 120_000);

  it('validate rejects a postprocess-timeout of 0 or a fraction, at its line', () => {
    fx?.cleanup();
    fx = makeRepo({
      prefix: 'sandbox-timeout-schema',
      files: { 'images/a.yaml': 'name: a\nbase: { source: tree, path: trees/base }\npostprocess-timeout: 0\npostprocess: ["true"]\n', 'images/b.yaml': 'name: b\nbase: { source: tree, path: trees/base }\npostprocess-timeout: 1.5\npostprocess: ["true"]\n', ...shellTree('trees/base') },
    });
    const r = fx.cli(['validate']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/images\/a\.yaml:3:\d+: postprocess-timeout/);
    expect(r.stderr).toMatch(/images\/b\.yaml:3:\d+: postprocess-timeout/);
  });
});

describe('the sandbox argv (pure)', () => {
  const helper: CapHelper = { binds: [{ src: '/host/setpriv', dest: `${HELPER_DIR}/setpriv` }], argv: [`${HELPER_DIR}/setpriv`, '--bounding-set=-all,+chown', '--'] };
  const all = new Set<string>([...PROC_MASKED_FILES, ...PROC_READONLY_DIRS, ...PROC_EMPTY_DIRS]);
  const post = sandboxArgs('/img', { network: false, epoch: 42, image: 'x', procPresent: all, helper, roBinds: [{ src: '/work/script', dest: '/tmp/s' }] }, ['/bin/sh', '-ec', 'true']);
  const apt = sandboxArgs('/img', { network: true, epoch: 42, image: 'x', procPresent: all, helper }, ['/bin/sh', '-ec', 'apt-get update']);
  /** Flag followed by its n operands, every occurrence. */
  const operands = (args: string[], flag: string, n: number) => args.flatMap((a, i) => (a === flag ? [args.slice(i + 1, i + 1 + n)] : []));

  it('every required flag: namespaces, session, die-with-parent, cap-drop ALL then only the kept caps, clearenv then the fixed env', () => {
    for (const args of [post, apt]) {
      expect(args.slice(0, 3)).toEqual(['--bind', '/img', '/']);
      for (const f of ['--unshare-pid', '--unshare-ipc', '--unshare-uts', '--unshare-cgroup', '--die-with-parent', '--new-session', '--clearenv']) expect(args, f).toContain(f);
      expect(operands(args, '--dev', 1)).toEqual([['/dev']]);
      expect(operands(args, '--proc', 1)).toEqual([['/proc']]);
      expect(operands(args, '--tmpfs', 1).map((o) => o[0])).toEqual(expect.arrayContaining(['/tmp', '/run']));
      // apt's gpgv runs as _apt and needs a world-writable sticky /tmp.
      expect(args.join(' ')).toContain('--perms 1777 --tmpfs /tmp');
      expect(operands(args, '--bind', 2)).toEqual([['/img', '/']]);
      expect(args.indexOf('--cap-drop')).toBeLessThan(args.indexOf('--cap-add'));
      expect(operands(args, '--cap-drop', 1)).toEqual([['ALL']]);
      expect(operands(args, '--cap-add', 1).flat().sort()).toEqual([...SANDBOX_CAPS, 'CAP_SETPCAP'].sort());
      const clear = args.indexOf('--clearenv');
      expect(args.findIndex((a) => a === '--setenv')).toBeGreaterThan(clear);
      expect(Object.fromEntries(operands(args, '--setenv', 2))).toEqual({ PATH: SANDBOX_PATH, HOME: '/root', LANG: 'C.UTF-8', LC_ALL: 'C.UTF-8', SOURCE_DATE_EPOCH: '42', TREECAST_IMAGE: 'x' });
      expect(args.some((a) => a === '/sys' || a.startsWith('/sys/'))).toBe(false);
      // The helper runs first and execs the command.
      expect(args.slice(-helper.argv.length - 3, -3)).toEqual(helper.argv);
      // The proc masks come after --proc, or the fresh procfs would cover them.
      const proc = args.indexOf('--proc');
      for (const f of PROC_MASKED_FILES) {
        const i = args.findIndex((a, j) => a === f && args[j - 1] === '/dev/null' && args[j - 2] === '--ro-bind');
        expect(i, f).toBeGreaterThan(proc);
      }
      for (const d of PROC_READONLY_DIRS) expect(operands(args, '--ro-bind', 2)).toContainEqual([d, d]);
      for (const d of PROC_EMPTY_DIRS) expect(operands(args, '--remount-ro', 1)).toContainEqual([d]);
    }
    expect(post.slice(-3)).toEqual(['/bin/sh', '-ec', 'true']);
    expect(operands(post, '--ro-bind', 2)).toContainEqual(['/work/script', '/tmp/s']);
  });

  it('no network for postprocess; the network (and a read-only resolv.conf) only for apt', () => {
    expect(post).toContain('--unshare-net');
    expect(post).not.toContain('--share-net');
    expect(post).not.toContain('/etc/resolv.conf');
    expect(apt).not.toContain('--unshare-net');
    expect(operands(apt, '--ro-bind', 2)).toContainEqual(['/etc/resolv.conf', '/etc/resolv.conf']);
  });

  it('masks only the /proc entries the kernel has (bwrap cannot mount over a missing one)', () => {
    const some = sandboxArgs('/img', { network: false, procPresent: new Set(['/proc/keys', '/proc/sys']), helper });
    expect(some).toContain('/proc/keys');
    expect(some).not.toContain('/proc/sysrq-trigger');
    expect(some).not.toContain('/proc/acpi');
    expect(operands(some, '--ro-bind', 2)).toContainEqual(['/proc/sys', '/proc/sys']);
  });

  it("the host helper: setpriv through the host's loader with only its own libraries, bound under the /run tmpfs", () => {
    const h = hostCapHelper();
    expect(h.binds.every((b) => b.dest.startsWith(`${HELPER_DIR}/`))).toBe(true);
    expect(h.binds.map((b) => path.basename(b.dest)).sort()).toEqual(['ld.so', 'libc.so.6', 'libcap-ng.so.0', 'setpriv']);
    for (const b of h.binds) expect(fs.existsSync(b.src), b.src).toBe(true);
    const keep = `-all,${SANDBOX_CAPS.map((c) => `+${c.slice(4).toLowerCase()}`).join(',')}`;
    expect(h.argv).toEqual([`${HELPER_DIR}/ld.so`, '--library-path', HELPER_DIR, `${HELPER_DIR}/setpriv`, `--bounding-set=${keep}`, `--inh-caps=${keep}`, `--ambient-caps=${keep}`, '--']);
    expect(() => hostCapHelper(() => false)).toThrow(/setpriv \(util-linux\) is not installed/);
  });
});

describe('the steps hand bwrap a clean environment (runner stubbed)', () => {
  interface Call { cmd: string; args: readonly string[]; opts: RunOptions }
  let previous: Runner | undefined;
  const stub = (): Call[] => {
    const calls: Call[] = [];
    previous = setRunner(async (cmd, args, opts) => {
      calls.push({ cmd, args, opts });
      return { exitCode: 0, stdout: '', stderr: '' };
    });
    return calls;
  };
  afterEach(() => {
    setRunner(previous);
  });
  // The root inside the work dir, as a build lays them out: sandboxed steps put their overlay (steps/layer.ts) in the work dir.
  const ctxWith = (manifest: Record<string, unknown>, root: string) =>
    ({ root, workDir: path.dirname(root), epoch: 7, signal: new AbortController().signal, manifest: { name: 'x', base: { source: 'image', image: 'b' }, ...manifest } }) as unknown as BuildContext;
  const scratchRoot = () => {
    const work = fs.mkdtempSync(path.join('/tmp', 'treecast-sbx-unit-'));
    fs.mkdirSync(path.join(work, 'root'));
    return { work, root: path.join(work, 'root') };
  };

  it('postprocess: cleanEnv with only PATH, the default timeout of 600 s or postprocess-timeout', async () => {
    const { work, root } = scratchRoot();
    try {
      fs.mkdirSync(path.join(root, 'bin'));
      fs.writeFileSync(path.join(root, 'bin/sh'), '');
      process.env.TREECAST_TEST_SECRET = SECRET_VALUE;
      const all = stub();
      await postprocess.run(ctxWith({ postprocess: ['true'] }, root));
      // With mount stubbed the overlay stays empty, and folding it back reads that as "everything deleted": a fresh /bin/sh.
      fs.mkdirSync(path.join(root, 'bin'), { recursive: true });
      fs.writeFileSync(path.join(root, 'bin/sh'), '');
      await postprocess.run(ctxWith({ postprocess: ['true'], 'postprocess-timeout': 5 }, root));
      // Each run: mount the overlay, the script in bwrap, umount.
      expect(all.map((c) => c.cmd)).toEqual(['mount', 'bwrap', 'umount', 'mount', 'bwrap', 'umount']);
      const calls = all.filter((c) => c.cmd === 'bwrap');
      expect(calls.map((c) => c.opts.timeoutMs)).toEqual([600_000, 5_000]);
      for (const c of calls) {
        expect(c.cmd).toBe('bwrap');
        expect(c.opts.cleanEnv).toBe(true);
        expect(Object.keys(c.opts.env ?? {})).toEqual(['PATH']);
        expect(c.args).toContain('--clearenv');
        expect(c.args.join('\0')).not.toContain(SECRET_VALUE);
      }
    } finally {
      delete process.env.TREECAST_TEST_SECRET;
      fs.rmSync(work, { recursive: true, force: true });
    }
  });

  it('packages on an image base: apt in the same sandbox, with the network, clean env', async () => {
    const { work, root } = scratchRoot();
    const all = stub();
    try {
      await packagesOnImage.run(ctxWith({ packages: ['hello'] }, root));
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
    }
    expect(all.map((c) => c.cmd)).toEqual(['mount', 'bwrap', 'umount']);
    const calls = all.filter((c) => c.cmd === 'bwrap');
    const { cmd, args, opts } = calls[0]!;
    expect(cmd).toBe('bwrap');
    expect(opts.cleanEnv).toBe(true);
    expect(Object.keys(opts.env ?? {})).toEqual(['PATH']);
    expect(args).not.toContain('--unshare-net');
    expect(args).toContain('--clearenv');
    expect(operands2(args, '--cap-drop')).toEqual(['ALL']);
    expect(args.slice(-2)).toEqual(['sh', 'hello']);
    expect(args.join(' ')).toContain(`${HELPER_DIR}/setpriv --bounding-set=`);
  });
});

function operands2(args: readonly string[], flag: string): string[] {
  return args.flatMap((a, i) => (a === flag ? [args[i + 1]!] : []));
}
