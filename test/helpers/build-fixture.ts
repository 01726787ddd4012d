/**
 * Temporary repositories of image specs for the build and artifact tests:
 * a git repository in os.tmpdir() (so SOURCE_DATE_EPOCH comes from its HEAD
 * commit), a cache dir next to it, the real CLI run against both, and
 * parsers for what ostree, unsquashfs and tar list.
 *
 * Nothing here downloads anything: `shellTree` makes a tiny root from the
 * host's static busybox, enough for postprocess scripts to run in a sandbox.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openRepo, type Repo } from '../../compiler/repo.js';
import { BIN, PROJECT_ROOT } from './cli.js';

export { PROJECT_ROOT };

/** One file of a fixture repository. A string is file content (mode 0644). */
export type FileSpec = string | Buffer | { content: string | Buffer; mode?: number } | { symlink: string } | { dir: true; mode?: number };

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Fixed commit date of the fixture's git commits: the builds' SOURCE_DATE_EPOCH. */
export const FIXTURE_EPOCH = 1_704_067_200; // 2024-01-01T00:00:00Z

export const HOST_BUSYBOX = '/usr/bin/busybox';

/** A program the tests need: missing ones fail the test loudly (never a skip). */
export function requireTool(name: string): string {
  const r = spawnSync('sh', ['-c', 'command -v "$1"', 'sh', name], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${name} is not installed, and these tests need it (run compiler/setup.sh)`);
  return r.stdout.trim();
}

/** Run a program, return stdout; throw with its stderr when it fails. */
export function sh(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string } = {}): string {
  const r = spawnSync(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, encoding: 'utf8', input: opts.input, maxBuffer: 256 * 1024 * 1024 });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}):\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

export function writeSpec(file: string, spec: FileSpec): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const st = fs.lstatSync(file, { throwIfNoEntry: false });
  if (st && !st.isDirectory()) fs.rmSync(file);
  if (typeof spec === 'string' || Buffer.isBuffer(spec)) {
    fs.writeFileSync(file, spec);
    fs.chmodSync(file, 0o644);
  } else if ('symlink' in spec) {
    fs.symlinkSync(spec.symlink, file);
  } else if ('dir' in spec) {
    fs.mkdirSync(file, { recursive: true });
    fs.chmodSync(file, spec.mode ?? 0o755);
  } else {
    fs.writeFileSync(file, spec.content);
    fs.chmodSync(file, spec.mode ?? 0o644);
  }
}

/**
 * A minimal root tree under `prefix` (a path in the repository): the host's
 * static busybox at /usr/bin/busybox, merged-/usr links, the shell tools as
 * links to busybox, account files, a systemd unit with an [Install] section,
 * a fake dpkg database and (by default) a fixture kernel, so that
 * `ostree admin deploy` accepts the commit. The kernel is fixture data only.
 */
export function shellTree(prefix: string, opts: { kernel?: boolean; passwd?: string; group?: string } = {}): Record<string, FileSpec> {
  if (!fs.existsSync(HOST_BUSYBOX)) throw new Error(`${HOST_BUSYBOX} is missing: install busybox-static (the shell tree of the build tests needs it)`);
  const t: Record<string, FileSpec> = {
    'usr/bin/busybox': { content: fs.readFileSync(HOST_BUSYBOX), mode: 0o755 },
    bin: { symlink: 'usr/bin' },
    sbin: { symlink: 'usr/sbin' },
    lib: { symlink: 'usr/lib' },
    'usr/sbin/nologin': { content: '#!/bin/sh\necho "This account is currently not available."\nexit 1\n', mode: 0o755 },
    'etc/passwd':
      opts.passwd ??
      'root:x:0:0:root:/root:/bin/sh\nsvc:x:999:999:image-only service user:/nonexistent:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n',
    'etc/group': opts.group ?? 'root:x:0:\nwheel:x:10:\nshadow:x:42:\nsvc:x:999:\nnogroup:x:65534:\n',
    'etc/shadow': { content: 'root:*:19000:0:99999:7:::\nsvc:!:19000::::::\nnobody:*:19000:0:99999:7:::\n', mode: 0o640 },
    'etc/gshadow': { content: 'root:*::\nwheel:*::\nshadow:*::\nsvc:!::\nnogroup:*::\n', mode: 0o640 },
    'etc/os-release': { symlink: '../usr/lib/os-release' },
    'etc/hostname': 'fixture\n',
    'usr/lib/os-release': 'ID=treecast-fixture\nNAME="treecast fixture"\nVERSION_ID=1\nPRETTY_NAME="treecast fixture"\n',
    'usr/lib/systemd/system/app.service': '[Unit]\nDescription=fixture app\n\n[Service]\nExecStart=/usr/bin/busybox sleep infinity\n\n[Install]\nWantedBy=multi-user.target\n',
    'usr/lib/systemd/system/multi-user.target': '[Unit]\nDescription=Multi-User System\n',
    'usr/lib/systemd/system/noisy.timer': '[Unit]\nDescription=noisy\n\n[Timer]\nOnCalendar=daily\n\n[Install]\nWantedBy=timers.target\n',
    'var/lib/dpkg/status':
      'Package: busybox-static\nStatus: install ok installed\nPriority: optional\nSection: shells\nMaintainer: Fixture <fixture@example.com>\nArchitecture: amd64\nVersion: 1:1.35.0-4+b3\nDescription: fixture\n\n' +
      'Package: fixture-base\nStatus: install ok installed\nPriority: required\nSection: admin\nMaintainer: Fixture <fixture@example.com>\nArchitecture: all\nVersion: 1.0\nDescription: fixture\n\n' +
      'Package: removed-pkg\nStatus: deinstall ok config-files\nPriority: optional\nSection: admin\nMaintainer: Fixture <fixture@example.com>\nArchitecture: all\nVersion: 0.9\nDescription: fixture\n',
    'var/log/fixture.log': 'log line\n',
    'root/.profile': { content: 'PS1="# "\n', mode: 0o600 },
    'srv/appdata/.keep': '',
    'tmp/stray': 'left over from the tree\n',
  };
  for (const tool of ['sh', 'cat', 'echo', 'ls', 'mkdir', 'mkfifo', 'sleep', 'touch', 'grep', 'test', 'true', 'false', 'id', 'rm', 'cp', 'chmod']) {
    t[`usr/bin/${tool}`] = { symlink: 'busybox' };
  }
  if (opts.kernel ?? true) {
    t['usr/lib/modules/6.1.0-test/vmlinuz'] = 'fixture kernel image, not bootable\n';
    t['usr/lib/modules/6.1.0-test/initramfs.img'] = 'fixture initramfs, not bootable\n';
  }
  return Object.fromEntries(Object.entries(t).map(([k, v]) => [`${prefix}/${k}`, v]));
}

export interface Fixture {
  /** The repository of image specs. */
  dir: string;
  /** TREECAST_CACHE_DIR for the CLI (outside the repository, so it never makes git dirty). */
  cacheDir: string;
  /** <cache>/repo */
  ostreeRepo: string;
  write(rel: string, spec: FileSpec): void;
  remove(rel: string): void;
  /** git add -A && git commit (at FIXTURE_EPOCH unless told otherwise); returns the new HEAD. */
  commit(message?: string, epoch?: number): string;
  head(): string;
  /** treecast <args> --repo DIR, with the fixture's cache dir unless `cacheDir` is given; `env` is added to the CLI's environment. */
  cli(args: string[], opts?: { cacheDir?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv }): CliResult;
  /** `build --json` that must succeed; returns the parsed images. */
  build(names?: string[], opts?: { cacheDir?: string; force?: boolean }): BuiltImage[];
  /** The CLI started in the background (for signals). */
  spawnCli(args: string[], opts?: { cacheDir?: string }): { child: ChildProcess; done: Promise<CliResult>; output: () => { stdout: string; stderr: string } };
  /** The Repo the CLI would open, with the fixture's (or the given) cache dir: for in-process buildImages(). */
  repo(cacheDir?: string): Repo;
  /** A fresh empty cache dir, removed with the fixture. */
  newCacheDir(): string;
  cleanup(): void;
}

export interface BuiltImage {
  name: string;
  ref: string;
  commit: string;
  version: string;
  inputHash: string;
  cached: boolean;
  seconds: number;
  steps: { name: string; seconds: number; detail?: string }[];
  artifacts: { type: string; path: string; size: number; sha256: string }[];
  outDir: string;
}

const GIT_ENV = (epoch: number): NodeJS.ProcessEnv => ({
  ...process.env,
  GIT_AUTHOR_NAME: 'treecast tests',
  GIT_AUTHOR_EMAIL: 'tests@treecast.invalid',
  GIT_COMMITTER_NAME: 'treecast tests',
  GIT_COMMITTER_EMAIL: 'tests@treecast.invalid',
  GIT_AUTHOR_DATE: `@${epoch} +0000`,
  GIT_COMMITTER_DATE: `@${epoch} +0000`,
  GIT_CONFIG_NOSYSTEM: '1',
  GIT_CONFIG_GLOBAL: '/dev/null',
});

const cliEnv = (cacheDir: string): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = { ...process.env, TREECAST_CACHE_DIR: cacheDir };
  delete env.TREECAST_DEBUG;
  delete env.SOURCE_DATE_EPOCH;
  return env;
};

/**
 * A temporary repository: `files` (paths relative to the repository root)
 * are written, then committed to a new git repository unless `git: false`.
 */
export function makeRepo(opts: { files: Record<string, FileSpec>; git?: boolean; prefix?: string }): Fixture {
  requireTool('git');
  const base = fs.mkdtempSync(path.join(os.tmpdir(), `treecast-${opts.prefix ?? 'build'}-`));
  const dir = path.join(base, 'repo');
  const cacheDir = path.join(base, 'cache');
  fs.mkdirSync(dir);
  let extraCaches = 0;
  const fx: Fixture = {
    dir,
    cacheDir,
    ostreeRepo: path.join(cacheDir, 'repo'),
    write: (rel, spec) => writeSpec(path.join(dir, rel), spec),
    remove: (rel) => fs.rmSync(path.join(dir, rel), { recursive: true, force: true }),
    commit(message = 'fixture', epoch = FIXTURE_EPOCH) {
      sh('git', ['add', '-A'], { cwd: dir, env: GIT_ENV(epoch) });
      sh('git', ['-c', 'commit.gpgsign=false', 'commit', '-q', '--allow-empty', '-m', message], { cwd: dir, env: GIT_ENV(epoch) });
      return fx.head();
    },
    head: () => sh('git', ['rev-parse', 'HEAD'], { cwd: dir, env: GIT_ENV(FIXTURE_EPOCH) }).trim(),
    cli(args, o = {}) {
      const r = spawnSync(process.execPath, [BIN, ...args, '--repo', dir], {
        cwd: dir,
        env: { ...cliEnv(o.cacheDir ?? cacheDir), ...o.env },
        encoding: 'utf8',
        timeout: o.timeoutMs ?? 120_000,
        maxBuffer: 64 * 1024 * 1024,
      });
      if (r.error) throw r.error;
      return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
    },
    build(names = [], o = {}) {
      const r = fx.cli(['build', ...names, '--json', ...(o.force ? ['--force'] : [])], { cacheDir: o.cacheDir });
      if (r.code !== 0) throw new Error(`treecast build failed (exit ${r.code}):\n${r.stderr}`);
      return (JSON.parse(r.stdout) as { images: BuiltImage[] }).images;
    },
    spawnCli(args, o = {}) {
      const child = spawn(process.execPath, [BIN, ...args, '--repo', dir], { cwd: dir, env: cliEnv(o.cacheDir ?? cacheDir), stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
      child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      const done = new Promise<CliResult>((resolve, reject) => {
        child.on('error', reject);
        child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
      });
      return { child, done, output: () => ({ stdout, stderr }) };
    },
    repo(cache) {
      return { ...openRepo({ repo: dir }), cacheDir: cache ?? cacheDir };
    },
    newCacheDir: () => path.join(base, `cache-${++extraCaches}`),
    cleanup() {
      // ostree admin deploy marks deployments immutable: chattr -i before removing.
      for (const d of findImmutable(base)) spawnSync('chattr', ['-i', d]);
      fs.rmSync(base, { recursive: true, force: true });
    },
  };
  for (const [rel, spec] of Object.entries(opts.files)) fx.write(rel, spec);
  if (opts.git ?? true) {
    sh('git', ['init', '-q', '-b', 'main', dir], { env: GIT_ENV(FIXTURE_EPOCH) });
    fx.commit('initial fixture');
  }
  return fx;
}

/** Every regular file under `dir`, recursively. */
export function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...filesUnder(p));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

/** Deployment roots under a scratch sysroot (ostree/deploy/<os>/deploy/<checksum>.<n>). */
function findImmutable(base: string): string[] {
  const out: string[] = [];
  const walk = (d: string, depth: number) => {
    if (depth > 8) return;
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (!e.isDirectory()) continue;
      const p = path.join(d, e.name);
      if (path.basename(d) === 'deploy' && /^[0-9a-f]{64}\.\d+$/.test(e.name)) out.push(p);
      else walk(p, depth + 1);
    }
  };
  walk(base, 0);
  return out;
}

/** Entries of a listing, keyed by absolute image path ("/" for the root). */
export interface Entry {
  type: 'd' | 'f' | 'l';
  /** Permission bits incl. setuid/setgid/sticky. */
  mode: number;
  uid: number;
  gid: number;
  /** Regular files only. */
  size?: number;
  target?: string;
}
export type Listing = Map<string, Entry>;

/** `ostree ls -R` of a commit. */
export function ostreeLs(repoPath: string, rev: string, sub = '/'): Listing {
  const out = sh('ostree', ['ls', `--repo=${repoPath}`, '-R', rev, sub]);
  const map: Listing = new Map();
  for (const line of out.split('\n')) {
    if (!line) continue;
    const m = /^([-dl])(\d{5,6}) (\d+) (\d+)\s+(\d+) (.+?)(?: -> (.*))?$/.exec(line);
    if (!m) throw new Error(`unexpected ostree ls line: ${line}`);
    const type = m[1] === 'd' ? 'd' : m[1] === 'l' ? 'l' : 'f';
    map.set(m[6]!, { type, mode: parseInt(m[2]!, 8) & 0o7777, uid: Number(m[3]), gid: Number(m[4]), size: type === 'f' ? Number(m[5]) : undefined, target: m[7] });
  }
  return map;
}

export function ostreeCat(repoPath: string, rev: string, file: string): string {
  return sh('ostree', ['cat', `--repo=${repoPath}`, rev, file]);
}

export function ostreeMeta(repoPath: string, rev: string, key: string): string {
  return sh('ostree', ['show', `--repo=${repoPath}`, rev, `--print-metadata-key=${key}`]).trim();
}

export function revParse(repoPath: string, ref: string): string | undefined {
  const r = spawnSync('ostree', ['rev-parse', `--repo=${repoPath}`, ref], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

/** `drwsr-xr-x` -> type and permission bits. */
export function parseLsMode(s: string): { type: string; mode: number } {
  if (!/^[-dlcbps][-rwxsStT]{9}$/.test(s)) throw new Error(`not an ls mode: ${s}`);
  let mode = 0;
  const bit = (i: number, ch: string, r: number, special: number) => {
    const c = s[i]!;
    if (c === ch || c === 's' || c === 't') mode |= r;
    if (c === 's' || c === 'S' || c === 't' || c === 'T') mode |= special;
  };
  const rw = (i: number, shift: number) => {
    if (s[i] === 'r') mode |= 4 << shift;
    if (s[i + 1] === 'w') mode |= 2 << shift;
  };
  rw(1, 6);
  bit(3, 'x', 0o100, 0o4000);
  rw(4, 3);
  bit(6, 'x', 0o010, 0o2000);
  rw(7, 0);
  bit(9, 'x', 0o001, 0o1000);
  return { type: s[0]!, mode };
}

/** Lines like `drwxr-xr-x 0/0   123 2024-01-01 00:00 NAME[ -> TARGET]` (unsquashfs -lln, tar -tv). */
function parseLsLong(out: string, name: (raw: string) => string | undefined): Listing {
  const map: Listing = new Map();
  for (const line of out.split('\n')) {
    if (!line.trim()) continue;
    const m = /^(\S{10}) (\d+)\/(\d+)\s+(\d+) \d{4}-\d\d-\d\d \d\d:\d\d(?::\d\d)? (.+)$/.exec(line);
    if (!m) throw new Error(`unexpected listing line: ${line}`);
    const { type, mode } = parseLsMode(m[1]!);
    if (type !== 'd' && type !== '-' && type !== 'l') throw new Error(`special file in an artifact: ${line}`);
    let rest = m[5]!;
    let target: string | undefined;
    if (type === 'l') {
      const i = rest.indexOf(' -> ');
      target = rest.slice(i + 4);
      rest = rest.slice(0, i);
    }
    const p = name(rest);
    if (p === undefined) continue;
    map.set(p, { type: type === '-' ? 'f' : (type as 'd' | 'l'), mode, uid: Number(m[2]), gid: Number(m[3]), size: type === '-' ? Number(m[4]) : undefined, target });
  }
  return map;
}

export function squashfsList(file: string): Listing {
  return parseLsLong(sh('unsquashfs', ['-lln', '-d', 'squashfs-root', file]), (raw) => {
    if (raw === 'squashfs-root') return '/';
    return raw.startsWith('squashfs-root/') ? raw.slice('squashfs-root'.length) : undefined;
  });
}

export function tarList(file: string): Listing {
  return parseLsLong(sh('tar', ['-tvv', '--numeric-owner', '-f', file]), (raw) => {
    const p = raw.replace(/^\.\/?/, '/').replace(/(.)\/$/, '$1');
    return p === '' ? '/' : p;
  });
}

/** A commit's tree as the artifacts show it: /usr/etc at /etc (what `ostree admin deploy` does). */
export function deployedLayout(commitTree: Listing): Listing {
  const out: Listing = new Map();
  for (const [p, e] of commitTree) {
    if (p === '/etc' || p.startsWith('/etc/')) continue;
    const mapped = p === '/usr/etc' ? '/etc' : p.startsWith('/usr/etc/') ? p.slice('/usr'.length) : p;
    out.set(mapped, e);
  }
  return out;
}

/** Listing as sorted plain objects, for readable toEqual diffs. */
export function asSorted(l: Listing): Record<string, Entry> {
  return Object.fromEntries([...l.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

export function tmpEntries(cacheDir: string): string[] {
  const t = path.join(cacheDir, 'tmp');
  return fs.existsSync(t) ? fs.readdirSync(t) : [];
}

