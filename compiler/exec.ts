/**
 * The one place treecast starts other programs. Every call is logged at
 * --debug with its quoted argv; a failure names the command, its exit code or
 * signal and the last lines of its stderr; a missing program names the Debian
 * package that provides it. A program that runs for more than a moment shows
 * a status line (progress.ts). Unit tests swap the runner with setRunner().
 */
import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import { execa, type Options, type ResultPromise } from 'execa';
import { UserError } from './diagnostics.js';
import { debug } from './log.js';
import { Tracker, type ProgressSpec } from './progress.js';

/** Which Debian package provides each program treecast drives. */
export const PROVIDERS: Record<string, string> = {
  ostree: 'ostree',
  mmdebstrap: 'mmdebstrap',
  mksquashfs: 'squashfs-tools',
  unsquashfs: 'squashfs-tools',
  zstd: 'zstd',
  tar: 'tar',
  gzip: 'gzip',
  xz: 'xz-utils',
  gpg: 'gnupg',
  bwrap: 'bubblewrap',
  git: 'git',
  'qemu-system-x86_64': 'qemu-system-x86',
  'mkfs.ext4': 'e2fsprogs',
  sfdisk: 'fdisk',
  extlinux: 'extlinux',
  'mkfs.erofs': 'erofs-utils',
  chattr: 'e2fsprogs',
  chromium: 'chromium',
  cpio: 'cpio',
  rsync: 'rsync',
  flock: 'util-linux',
  setpriv: 'util-linux',
  systemctl: 'systemd',
  getfattr: 'attr',
  setfattr: 'attr',
  // Essential packages of every Debian system, listed so a missing one is still named.
  cp: 'coreutils',
  dd: 'coreutils',
  du: 'coreutils',
  ln: 'coreutils',
  rm: 'coreutils',
  truncate: 'coreutils',
  mount: 'mount',
  umount: 'mount',
  'dpkg-query': 'dpkg',
};

export interface RunOptions {
  cwd?: string;
  env?: Record<string, string | undefined>;
  /**
   * Give the program only `env`, none of treecast's own environment: for
   * programs that run untrusted code (the sandbox), so CI tokens stay out.
   */
  cleanEnv?: boolean;
  input?: string | Buffer;
  /** Stream the program's output to our stderr (long steps like mmdebstrap at --debug). */
  inherit?: boolean;
  /** stdin, stdout and stderr are treecast's own (`treecast shell`: a person types into the program). */
  interactive?: boolean;
  /** Resolve instead of throwing on a non-zero exit. */
  allowFailure?: boolean;
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Return stdout as bytes. */
  binary?: boolean;
  /**
   * What the status line shows while the program runs (progress.ts). Every
   * program gets one with its last output line by default; false: none.
   */
  progress?: ProgressSpec | false;
  /** Set by run(): the runner hands it the program's output and pid, for the status line. */
  tracker?: Tracker;
}

export interface RunResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  stdoutBytes?: Buffer;
}

export type Runner = (cmd: string, args: readonly string[], opts: RunOptions) => Promise<RunResult>;

export class CommandError extends UserError {
  constructor(
    message: string,
    readonly command: string,
    readonly commandExitCode: number,
    readonly stderr: string,
  ) {
    super(message);
    this.name = 'CommandError';
  }
}

/** Shell-quoted command line, to paste into a terminal. */
export function quoteArgv(argv: readonly string[]): string {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

const execaRunner: Runner = async (cmd, args, opts) => {
  const options: Options = {
    cwd: opts.cwd,
    // An object even when env is absent: execa would pass undefined on, and Node then inherits everything.
    env: opts.cleanEnv ? { ...opts.env } : opts.env,
    extendEnv: !opts.cleanEnv,
    input: opts.input,
    reject: false,
    stripFinalNewline: false,
    timeout: opts.timeoutMs,
    cancelSignal: opts.signal,
    ...(opts.interactive ? { stdin: 'inherit', stdout: 'inherit', stderr: 'inherit' } : {
      stdout: opts.inherit ? ['pipe', 'inherit'] : 'pipe',
      stderr: opts.inherit ? ['pipe', 'inherit'] : 'pipe',
    }),
    encoding: opts.binary ? 'buffer' : 'utf8',
    maxBuffer: 512 * 1024 * 1024,
  };
  const child = execa(cmd, args, options);
  track(child, opts.tracker, !opts.binary);
  const r = await child;
  if (r.failed && (r as { code?: string }).code === 'ENOENT') {
    throw missingProgram(cmd);
  }
  if (r.isCanceled) throw new UserError(`${cmd} was interrupted`);
  if (r.signal && !opts.allowFailure) {
    throw new CommandError(`${quoteArgv([cmd, ...args])} was killed by ${r.signal}${r.timedOut ? ' (timed out)' : ''}`, cmd, -1, String(r.stderr ?? ''));
  }
  const stdoutBytes = opts.binary ? Buffer.from(r.stdout as unknown as Uint8Array) : undefined;
  return {
    exitCode: r.exitCode ?? -1,
    stdout: opts.binary ? '' : String(r.stdout ?? ''),
    stderr: opts.binary ? Buffer.from((r.stderr ?? '') as unknown as Uint8Array).toString() : String(r.stderr ?? ''),
    stdoutBytes,
  };
};

/** Show a program's output lines (stdout only when it is text) and its pid to its status line. */
function track(child: ResultPromise, tracker: Tracker | undefined, stdoutIsText: boolean): void {
  if (!tracker) return;
  tracker.addPid(child.pid);
  if (stdoutIsText) child.stdout?.on('data', (c: Buffer | string) => tracker.chunk(c));
  child.stderr?.on('data', (c: Buffer | string) => tracker.chunk(c));
}

let runner: Runner = execaRunner;

/** For unit tests that check argv: replace the runner, get the old one back. */
export function setRunner(r: Runner | undefined): Runner {
  const prev = runner;
  runner = r ?? execaRunner;
  return prev;
}

export function missingProgram(cmd: string): UserError {
  const pkg = PROVIDERS[cmd];
  return new UserError(`${cmd}: program not found${pkg ? ` (install it: apt-get install ${pkg})` : ''}`);
}

/** Fail before any work when a program a job needs is not installed. */
export async function requirePrograms(cmds: Iterable<string>): Promise<void> {
  for (const cmd of new Set(cmds)) if (!(await which(cmd))) throw missingProgram(cmd);
}

/** Run a program; throws a CommandError with the tail of stderr when it fails. */
export async function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const line = quoteArgv([cmd, ...args]);
  debug(`$ ${opts.cwd ? `(cd ${opts.cwd}) ` : ''}${line}`);
  // With inherit the program's own output is on the terminal already.
  const tracker = opts.progress === false || opts.inherit || opts.interactive ? undefined : new Tracker(cmd, opts.progress);
  let r: RunResult;
  try {
    r = await runner(cmd, args, { ...opts, tracker });
  } finally {
    tracker?.stop();
  }
  if (r.exitCode !== 0 && !opts.allowFailure) {
    const tail = (r.stderr || r.stdout).trimEnd().split('\n').slice(-12).join('\n');
    throw new CommandError(`command failed with exit code ${r.exitCode}: ${line}${tail ? `\n${indent(tail)}` : ''}`, cmd, r.exitCode, r.stderr);
  }
  return r;
}

export interface PipeOptions {
  /** Where the second program's stdout goes (created or truncated). */
  stdoutFile: string;
  signal?: AbortSignal;
  progress?: ProgressSpec | false;
}

/**
 * `first | second > stdoutFile`, e.g. tar | zstd: no intermediate file. Both
 * programs are logged, cancelled together by the signal, and a failure names
 * the side that failed with its exit code and stderr.
 */
export async function runPipe(first: [string, readonly string[]], second: [string, readonly string[]], opts: PipeOptions): Promise<void> {
  const [c1, a1] = first;
  const [c2, a2] = second;
  const line = `${quoteArgv([c1, ...a1])} | ${quoteArgv([c2, ...a2])} > ${quoteArgv([opts.stdoutFile])}`;
  debug(`$ ${line}`);
  const tracker = opts.progress === false ? undefined : new Tracker(c1, opts.progress);
  try {
    const [r1, r2] = await pipeRunner(first, second, { ...opts, tracker });
    // Which side failed: when the sink dies, the source only fails to write
    // (SIGPIPE, "Broken pipe", or "Connection reset by peer" on Node's socket
    // pipes), so a failed sink is the cause. A source that fails on its own
    // (tar cannot read a file) ends the sink's input early, and the sink succeeds.
    const failed = (r: PipeSide) => r.canceled || r.notFound || r.signal !== undefined || r.exitCode !== 0;
    for (const [cmd, r] of failed(r2) ? ([[c2, r2]] as const) : ([[c1, r1]] as const)) {
      if (r.canceled) throw new UserError(`${cmd} was interrupted`);
      if (r.notFound) throw missingProgram(cmd);
      if (r.signal) throw new CommandError(`${cmd} was killed by ${r.signal}: ${line}${tailOf(r.stderr)}`, cmd, -1, r.stderr);
      if (r.exitCode !== 0) throw new CommandError(`${cmd} failed with exit code ${r.exitCode}: ${line}${tailOf(r.stderr)}`, cmd, r.exitCode, r.stderr);
    }
  } finally {
    tracker?.stop();
  }
}

export interface PipeSide {
  exitCode: number;
  signal?: string;
  stderr: string;
  canceled?: boolean;
  notFound?: boolean;
}
export type PipeRunner = (first: [string, readonly string[]], second: [string, readonly string[]], opts: PipeOptions & { tracker?: Tracker }) => Promise<[PipeSide, PipeSide]>;

const execaPipeRunner: PipeRunner = async ([c1, a1], [c2, a2], opts) => {
  const common: Options = { reject: false, cancelSignal: opts.signal, stripFinalNewline: false, maxBuffer: 64 * 1024 * 1024 };
  const source = execa(c1, a1, { ...common, stdin: 'ignore', stdout: 'pipe', stderr: 'pipe', buffer: { stdout: false, stderr: true } });
  // Not buffered: execa would count the file's bytes against maxBuffer and cut the sink off at 64 MiB.
  const sink = execa(c2, a2, { ...common, stdin: 'pipe', stdout: { file: opts.stdoutFile }, stderr: 'pipe', buffer: { stdout: false, stderr: true } });
  track(source, opts.tracker, false);
  track(sink, opts.tracker, false);
  // Awaited through the two results below; the pipe's own rejection repeats theirs.
  source.pipe(sink).catch(() => undefined);
  const side = (r: Awaited<ResultPromise>): PipeSide => ({
    exitCode: r.exitCode ?? -1,
    signal: r.signal ?? undefined,
    stderr: String(r.stderr ?? ''),
    canceled: r.isCanceled,
    notFound: r.failed && (r as { code?: string }).code === 'ENOENT',
  });
  const [r1, r2] = await Promise.all([source, sink]);
  return [side(r1), side(r2)];
};

let pipeRunner: PipeRunner = execaPipeRunner;

/** For unit tests: replace the pipe runner, get the old one back. */
export function setPipeRunner(r: PipeRunner | undefined): PipeRunner {
  const prev = pipeRunner;
  pipeRunner = r ?? execaPipeRunner;
  return prev;
}

function tailOf(stderr: string): string {
  const tail = stderr.trimEnd().split('\n').slice(-12).join('\n');
  return tail ? `\n${indent(tail)}` : '';
}

function indent(s: string): string {
  return s
    .split('\n')
    .map((l) => `    ${l}`)
    .join('\n');
}

/** Is a program on PATH? (doctor, and tests that must fail loudly when a tool is missing) */
export async function which(cmd: string): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? '').split(':').filter(Boolean)) {
    const p = path.join(dir, cmd);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      /* not in this directory */
    }
  }
  return undefined;
}

export interface Started {
  /** Resolves when the program exits (never rejects). */
  done: Promise<{ exitCode: number | undefined; signal?: string }>;
  kill(signal?: NodeJS.Signals): void;
  /** End the program's stdin (with `stdinPipe`): a lock holder exits on EOF. */
  closeStdin(): void;
}

/**
 * Start a long-running program and see its output line by line (QEMU's
 * serial console). The caller decides when it has seen enough and kills it.
 */
export function start(cmd: string, args: readonly string[], opts: { onLine: (line: string) => void; cwd?: string; stdinPipe?: boolean }): Started {
  debug(`$ ${quoteArgv([cmd, ...args])} &`);
  const child = execa(cmd, args, { cwd: opts.cwd, reject: false, stdin: opts.stdinPipe ? 'pipe' : 'ignore', stdout: 'pipe', stderr: 'pipe', buffer: false });
  let partial = '';
  const feed = (chunk: Buffer | string) => {
    partial += chunk.toString();
    const lines = partial.split(/\r?\n/);
    partial = lines.pop() ?? '';
    for (const l of lines) opts.onLine(l);
  };
  child.stdout?.on('data', feed);
  child.stderr?.on('data', feed);
  const done = child.then(
    (r) => {
      if (partial) opts.onLine(partial);
      if ((r as { code?: string }).code === 'ENOENT') opts.onLine(missingProgram(cmd).message);
      return { exitCode: r.exitCode, signal: r.signal ?? undefined };
    },
    () => ({ exitCode: undefined }),
  );
  return { done, kill: (signal = 'SIGKILL') => child.kill(signal), closeStdin: () => child.stdin?.end() };
}
