/**
 * A throw-away image-spec repository for the publish/serve tests, driven
 * through the real CLI, plus helpers for the real ostree client.
 *
 * The repository holds two images:
 *  - `host`: base {source: tree}, a tree with a (fake, small) kernel and
 *    initramfs in /usr/lib/modules/6.1.0-test, dracut's 90dmsquash-live dir
 *    (so diskless detects dracut), os-release (ostree admin deploy reads it),
 *    a 512 KiB incompressible blob (so a full pull costs far more than a
 *    delta) and /etc/motd, the file v2 changes; outputs squashfs + tarball.
 *  - `netboot`: base {source: image, image: host}; outputs squashfs + diskless.
 *
 * Everything runs asynchronously (child processes, never spawnSync) because
 * the HTTP server the ostree clients talk to lives in the test process.
 */
import { removeSysroot } from '../../compiler/boot/sysroot.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BIN } from './cli.js';

export const HOST = 'host';
export const NETBOOT = 'netboot';
export const HOST_REF = 'host/x86_64/stable';
export const NETBOOT_REF = 'netboot/x86_64/stable';
export const KVER = '6.1.0-test';
export const HOST_KERNEL_ARGS = ['console=ttyS0', 'quiet'];
export const NETBOOT_DISKLESS_ARGS = ['rd.shell=0'];

export interface ProcResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  pid: number;
}

export interface RunOpts {
  cwd?: string;
  env?: Record<string, string | undefined>;
  /** Kill the child with SIGKILL after this many ms (external crash). */
  killAfterMs?: number;
  timeoutMs?: number;
  /** Own process group, so orphans of a killed child can be waited for. */
  detached?: boolean;
  /** Called with the started child (to kill it on an event). */
  onSpawn?: (child: ChildProcess) => void;
}

/** Runs a program; never throws for a non-zero exit (callers assert on it). A missing program rejects. */
export function exec(cmd: string, args: string[], opts: RunOpts = {}): Promise<ProcResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'], detached: opts.detached });
    opts.onSpawn?.(child);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timers: NodeJS.Timeout[] = [];
    if (opts.killAfterMs !== undefined) timers.push(setTimeout(() => child.kill('SIGKILL'), opts.killAfterMs));
    timers.push(
      setTimeout(() => {
        stderr += `\n[test harness: ${cmd} timed out after ${opts.timeoutMs ?? 120_000} ms]\n`;
        child.kill('SIGKILL');
      }, opts.timeoutMs ?? 120_000),
    );
    child.on('error', (err) => {
      timers.forEach(clearTimeout);
      reject(new Error(`cannot run ${cmd}: ${err.message} (is it installed?)`));
    });
    child.on('close', (code, signal) => {
      timers.forEach(clearTimeout);
      resolve({ code, signal, stdout, stderr, pid: child.pid ?? -1 });
    });
  });
}

/** Like exec, but a non-zero exit is an error that shows the output. */
export async function must(cmd: string, args: string[], opts: RunOpts = {}): Promise<ProcResult> {
  const r = await exec(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.code}, signal ${r.signal}):\n${r.stdout}\n${r.stderr}`);
  return r;
}

/** Waits until no process of the process group `pgid` is left (orphans of a SIGKILLed publisher). */
export async function waitForProcessGroup(pgid: number, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      process.kill(-pgid, 0);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ESRCH') return;
      throw err;
    }
    if (Date.now() > deadline) throw new Error(`processes of group ${pgid} still running after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface BuiltImage {
  name: string;
  ref: string;
  commit: string;
  version: string;
  cached: boolean;
}

export interface SigningKey {
  fingerprint: string;
  homedir: string;
  publicKey: string;
  /** The ASCII-armoured public key written to a file, for `remote add --gpg-import`. */
  publicKeyFile: string;
}

export interface FixtureOptions {
  /** treecast.yaml publish.url (may be set later with setConfig). */
  url?: string;
  /** treecast.yaml retention.keep. */
  keep?: number;
}

/** Fixed commit times: v1 at T0, each later commit 100 s after the previous (distinct build times). */
const T0 = 1_790_000_000;

export class PublishFixture {
  readonly root: string;
  readonly spec: string;
  readonly cache: string;
  private commits = 0;
  private config: FixtureOptions;

  private constructor(root: string, config: FixtureOptions) {
    this.root = root;
    this.spec = path.join(root, 'spec');
    this.cache = path.join(root, 'cache');
    this.config = config;
  }

  /** Writes the spec repository (v1 content) and commits it. */
  static async create(prefix: string, config: FixtureOptions = {}): Promise<PublishFixture> {
    const f = new PublishFixture(fs.mkdtempSync(path.join(os.tmpdir(), `treecast-${prefix}-`)), config);
    f.writeSpec();
    await f.git(['init', '-q', '-b', 'main']);
    await f.commit('v1: initial image specs');
    return f;
  }

  /** A new directory under the fixture root (publish dirs, client repos, sysroots). */
  dir(name: string): string {
    const d = path.join(this.root, name);
    fs.mkdirSync(d, { recursive: true });
    return d;
  }

  private writeSpec(): void {
    const put = (rel: string, content: string | Buffer) => {
      const file = path.join(this.spec, rel);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, content);
    };
    const t = 'tree';
    put(`${t}/usr/lib/modules/${KVER}/vmlinuz`, randomBytes(4096));
    put(`${t}/usr/lib/modules/${KVER}/initramfs.img`, randomBytes(3072));
    put(`${t}/usr/lib/dracut/modules.d/90dmsquash-live/module-setup.sh`, '#!/bin/bash\n# fixture: marks the initramfs as dracut with dmsquash-live\ncheck() { return 0; }\n');
    put(`${t}/usr/lib/os-release`, 'NAME="treecast test"\nID=treecast-test\nVERSION_ID=1\nPRETTY_NAME="treecast test"\n');
    fs.mkdirSync(path.join(this.spec, t, 'etc'), { recursive: true });
    fs.symlinkSync('../usr/lib/os-release', path.join(this.spec, t, 'etc/os-release'));
    put(`${t}/etc/motd`, 'treecast fixture v1\n');
    put(`${t}/usr/share/treecast-test/blob.bin`, randomBytes(512 * 1024));
    put(`${t}/usr/bin/treecast-hello`, '#!/bin/sh\necho hello from the fixture\n');
    fs.chmodSync(path.join(this.spec, t, 'usr/bin/treecast-hello'), 0o755);
    put(
      `images/${HOST}.yaml`,
      [
        `name: ${HOST}`,
        'automatic-version-prefix: "1.0"',
        'base: { source: tree, path: tree }',
        `kernel-args: [${HOST_KERNEL_ARGS.join(', ')}]`,
        'metadata: { owner: publish-tests }',
        'outputs:',
        '  ostree: {}',
        '  squashfs: {}',
        '  tarball: {}',
        '',
      ].join('\n'),
    );
    put(
      `images/${NETBOOT}.yaml`,
      [
        `name: ${NETBOOT}`,
        'automatic-version-prefix: "1.0"',
        `base: { source: image, image: ${HOST} }`,
        'files:',
        '  - { path: /etc/treecast-role, content: "netboot\\n" }',
        'outputs:',
        '  squashfs: {}',
        `  diskless: { kernel-args: [${NETBOOT_DISKLESS_ARGS.join(', ')}] }`,
        '',
      ].join('\n'),
    );
    this.writeConfig();
  }

  /** Rewrites treecast.yaml (publish.url, retention.keep); not committed: publish reads the working tree. */
  setConfig(patch: FixtureOptions): void {
    this.config = { ...this.config, ...patch };
    this.writeConfig();
  }

  private writeConfig(): void {
    const lines = ['# treecast publish test fixture'];
    if (this.config.url) lines.push('publish:', `  url: ${this.config.url}`);
    if (this.config.keep !== undefined) lines.push('retention:', `  keep: ${this.config.keep}`);
    fs.writeFileSync(path.join(this.spec, 'treecast.yaml'), lines.join('\n') + '\n');
  }

  /** Changes one file of the tree (v2 = a new /etc/motd). */
  editTree(rel: string, content: string): void {
    fs.writeFileSync(path.join(this.spec, 'tree', rel), content);
  }

  async git(args: string[]): Promise<ProcResult> {
    const when = `@${T0 + this.commits * 100} +0000`;
    return must('git', ['-c', 'user.name=treecast tests', '-c', 'user.email=tests@treecast.invalid', '-c', 'commit.gpgsign=false', ...args], {
      cwd: this.spec,
      env: { GIT_AUTHOR_DATE: when, GIT_COMMITTER_DATE: when },
    });
  }

  async commit(message: string): Promise<void> {
    await this.git(['add', '-A']);
    await this.git(['commit', '-q', '-m', message]);
    this.commits++;
  }

  /** `treecast <args> --repo SPEC` with this fixture's cache dir. */
  treecast(args: string[], opts: RunOpts = {}): Promise<ProcResult> {
    return exec(process.execPath, [BIN, ...args, '--repo', this.spec], { ...opts, env: { TREECAST_CACHE_DIR: this.cache, TREECAST_DEBUG: undefined, ...opts.env } });
  }

  async build(): Promise<Record<string, BuiltImage>> {
    // These fixtures publish into local dirs: history comes from there, not from publish.url
    // (which may name a server that is not running, like the crash tests' :8080).
    const r = await this.treecast(['build', '--json', '--no-remote-history']);
    if (r.code !== 0) throw new Error(`treecast build failed (exit ${r.code}):\n${r.stderr}`);
    const out = JSON.parse(r.stdout) as { images: BuiltImage[] };
    return Object.fromEntries(out.images.map((i) => [i.name, i]));
  }

  /** `treecast publish --dir DIR --url URL [--gpg-key ...] --json [extra]`. */
  publish(dir: string, opts: { url?: string; key?: SigningKey; extra?: string[]; run?: RunOpts } = {}): Promise<ProcResult> {
    const args = ['publish', '--dir', dir, '--json'];
    if (opts.url) args.push('--url', opts.url);
    if (opts.key) args.push('--gpg-key', opts.key.fingerprint, '--gpg-homedir', opts.key.homedir);
    return this.treecast([...args, ...(opts.extra ?? [])], opts.run);
  }

  async mustPublish(dir: string, opts: { url?: string; key?: SigningKey; extra?: string[] } = {}): Promise<ProcResult> {
    const r = await this.publish(dir, opts);
    if (r.code !== 0) throw new Error(`treecast publish failed (exit ${r.code}, signal ${r.signal}):\n${r.stdout}\n${r.stderr}`);
    return r;
  }

  async keygen(): Promise<SigningKey> {
    const homedir = path.join(this.root, 'gnupg');
    const r = await this.treecast(['keygen', '--homedir', homedir, '--json']);
    if (r.code !== 0) throw new Error(`treecast keygen failed:\n${r.stderr}`);
    const k = JSON.parse(r.stdout) as Omit<SigningKey, 'publicKeyFile'>;
    const publicKeyFile = path.join(this.root, 'pubkey.asc');
    fs.writeFileSync(publicKeyFile, k.publicKey);
    return { ...k, publicKeyFile };
  }

  /** Removes everything: stops gpg-agent, makes deployed roots mutable again. */
  async cleanup(): Promise<void> {
    if (fs.existsSync(path.join(this.root, 'gnupg'))) await exec('gpgconf', ['--homedir', path.join(this.root, 'gnupg'), '--kill', 'all']);
    for (const e of fs.readdirSync(this.root)) {
      const deploy = path.join(this.root, e, 'ostree/deploy');
      if (fs.existsSync(deploy)) await removeSysroot(path.join(this.root, e));
    }
    fs.rmSync(this.root, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------
// ostree client helpers
// ---------------------------------------------------------------------------

export interface RemoteOpts {
  /** Import this key and verify commits (and the summary). Without it: --no-gpg-verify unless verify is forced. */
  gpgImport?: string;
  /** gpg-verify=true even without an imported key (to show unsigned commits are refused). */
  verify?: boolean;
}

export async function clientRepo(dir: string, mode: 'archive' | 'bare-user' = 'archive'): Promise<string> {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  await must('ostree', ['init', `--repo=${dir}`, `--mode=${mode}`]);
  return dir;
}

export async function remoteAdd(repo: string, remote: string, url: string, ref: string, o: RemoteOpts = {}): Promise<void> {
  const args = [`--repo=${repo}`, 'remote', 'add'];
  if (o.gpgImport) args.push(`--gpg-import=${o.gpgImport}`, '--set=gpg-verify=true', '--set=gpg-verify-summary=true');
  else if (o.verify) args.push('--set=gpg-verify=true');
  else args.push('--no-gpg-verify');
  await must('ostree', [...args, remote, url, ref]);
}

/** A fresh client repo with one remote, pulling one ref: the exit status and the commit it got. */
export async function freshPull(dir: string, url: string, ref: string, o: RemoteOpts = {}): Promise<{ ok: boolean; commit?: string; output: string }> {
  await clientRepo(dir);
  await remoteAdd(dir, 'origin', url, ref, o);
  const r = await exec('ostree', [`--repo=${dir}`, 'pull', 'origin', ref]);
  if (r.code !== 0) return { ok: false, output: r.stdout + r.stderr };
  const rev = await must('ostree', [`--repo=${dir}`, 'rev-parse', `origin:${ref}`]);
  return { ok: true, commit: rev.stdout.trim(), output: r.stdout + r.stderr };
}

export async function fsck(repo: string): Promise<{ ok: boolean; output: string }> {
  const r = await exec('ostree', ['fsck', `--repo=${repo}`]);
  const output = r.stdout + r.stderr;
  return { ok: r.code === 0 && !/error|corrupt/i.test(output.replace(/no errors found/g, '')), output };
}

export async function revParse(repo: string, ref: string): Promise<string | undefined> {
  const r = await exec('ostree', [`--repo=${repo}`, 'rev-parse', ref]);
  return r.code === 0 ? r.stdout.trim() : undefined;
}

// ---------------------------------------------------------------------------
// access log
// ---------------------------------------------------------------------------

export interface AccessEntry {
  method: string;
  path: string;
  status: number;
  bytes: number;
}

/** Parses the server's access lines: `CLIENT "METHOD PATH" STATUS BYTES Nms`. */
export function parseAccessLog(lines: string[]): AccessEntry[] {
  const out: AccessEntry[] = [];
  for (const l of lines) {
    const m = /^\S+ "(\S+) (\S+)" (\d{3}) (\d+) \d+ms/.exec(l);
    if (m) out.push({ method: m[1]!, path: m[2]!, status: Number(m[3]), bytes: Number(m[4]) });
  }
  return out;
}

export const sumBytes = (entries: AccessEntry[]) => entries.reduce((s, e) => s + e.bytes, 0);

/** Recursively lists entries below dir whose name matches re (leftovers of a killed publish). */
export function findNames(dir: string, re: RegExp, skip: string[] = ['repo']): string[] {
  const out: string[] = [];
  const visit = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (re.test(e.name)) out.push(path.relative(dir, p));
      if (e.isDirectory() && !skip.includes(path.relative(dir, p))) visit(p);
    }
  };
  if (fs.existsSync(dir)) visit(dir);
  return out;
}
