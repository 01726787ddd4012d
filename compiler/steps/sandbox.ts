/**
 * The sandbox for code that comes with a pull request and runs as root:
 * postprocess snippets and scripts, and apt inside an image-derived base.
 *
 * treecast itself runs as root, and bubblewrap started by root keeps every
 * capability unless told otherwise. So the argv built here:
 *
 * - shows only the image root (read-write: it is what is being built), the
 *   declared inputs read-only, a fresh /dev (bwrap --dev), a fresh /proc with
 *   the host-global knobs masked, and tmpfs on /tmp and /run;
 * - gives new pid, ipc, uts, cgroup and (unless the step needs the archive)
 *   network namespaces, a new session (no TIOCSTI into our terminal), and
 *   dies with treecast (a killed build leaves no process behind: the pid
 *   namespace dies with its init);
 * - keeps uid 0 but only the capabilities that installing packages inside
 *   the image needs (SANDBOX_CAPS), in the effective AND the bounding set;
 * - starts from an empty environment (SANDBOX_ENV below), so CI tokens and
 *   whatever else is in treecast's environment never reach the script.
 *
 * bwrap drops the bounding set only when it makes a user namespace, which
 * would leave a single uid mapped and break every chown in the image. So the
 * last step before the script is the host's util-linux `setpriv`, bound
 * read-only into /run/treecast-sandbox, which clears the bounding set and the
 * inheritable and ambient sets down to SANDBOX_CAPS and then execs the
 * command. bwrap always sets no_new_privs as well: a setuid-root binary or
 * file capabilities in the image grant nothing on exec even before that.
 *
 * docs/sandbox.md is the user-facing description of all of this.
 */
import path from 'node:path';
import { UserError } from '../diagnostics.js';
import { hostPathExists } from '../compile/host-files.js';

/**
 * Capabilities kept inside the sandbox, each because dpkg/apt (or a
 * postprocess script doing what they do) needs it on files of the image.
 * Everything that reaches beyond the image root (SYS_ADMIN/mount, MKNOD,
 * SYS_MODULE, SYS_RAWIO, NET_ADMIN, NET_RAW, SYS_PTRACE, SYS_BOOT, SYS_TIME,
 * SETFCAP, SYS_CHROOT, MAC_*, BPF, PERFMON, ...) is dropped.
 */
export const SANDBOX_CAPS = [
  // dpkg chowns unpacked files to their package owners (root:shadow, _apt, ...); scripts chown app dirs.
  'CAP_CHOWN',
  // root writing files that are not mode-writable (0444 files, 0555 dirs shipped by packages).
  'CAP_DAC_OVERRIDE',
  // root reading 0600/0640 files and traversing 0700 dirs of other owners (shadow, /var/lib/* of services).
  'CAP_DAC_READ_SEARCH',
  // chmod/utime/rename on files owned by other users (dpkg sets modes and mtimes after chown).
  'CAP_FOWNER',
  // keep setuid/setgid bits when root writes or chowns such files (passwd, su, ping fallback).
  'CAP_FSETID',
  // apt signals its download methods, which run as _apt, not root.
  'CAP_KILL',
  // apt drops to the _apt user for downloads; maintainer scripts use runuser/su to other users.
  'CAP_SETUID',
  // same for groups: setgroups/setgid when dropping to _apt and friends.
  'CAP_SETGID',
] as const;

/** Where the bounding-set helper is bound inside the sandbox (a tmpfs: never part of the image). */
export const HELPER_DIR = '/run/treecast-sandbox';

/** PATH inside the sandbox: the Debian default for root. */
export const SANDBOX_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * The whole environment inside the sandbox: nothing is inherited from the host.
 * SOURCE_DATE_EPOCH and TREECAST_IMAGE are added by sandboxArgs when given.
 */
export const SANDBOX_ENV: Readonly<Record<string, string>> = {
  PATH: SANDBOX_PATH,
  HOME: '/root',
  LANG: 'C.UTF-8',
  LC_ALL: 'C.UTF-8',
};

/**
 * procfs files that expose or control the whole host even from a pid
 * namespace: /dev/null is bound over them (what runc and podman do).
 */
export const PROC_MASKED_FILES = ['/proc/sysrq-trigger', '/proc/kcore', '/proc/keys', '/proc/key-users', '/proc/timer_list', '/proc/timer_stats', '/proc/sched_debug', '/proc/latency_stats'] as const;

/** procfs directories with host-global knobs writable by uid 0: read-only (/proc/sys sysctls, irq affinity, pci, nfsd). */
export const PROC_READONLY_DIRS = ['/proc/sys', '/proc/irq', '/proc/bus', '/proc/fs'] as const;

/** procfs directories hidden under an empty read-only tmpfs. */
export const PROC_EMPTY_DIRS = ['/proc/acpi', '/proc/scsi'] as const;

export interface Bind {
  /** Path on the host. */
  src: string;
  /** Path inside the sandbox. */
  dest: string;
}

/**
 * The prefix that clears the bounding set before the command: which host
 * files to bind into HELPER_DIR and the argv that runs setpriv from there.
 */
export interface CapHelper {
  binds: Bind[];
  argv: string[];
}

export interface SandboxOptions {
  /** Share the host's network (and its /etc/resolv.conf, read-only): only apt needs it. */
  network: boolean;
  /** SOURCE_DATE_EPOCH inside. */
  epoch?: number;
  /** TREECAST_IMAGE inside: the manifest name. */
  image?: string;
  /** Further variables inside, set by treecast itself (INITRD=No for apt), never taken from the host. */
  env?: Record<string, string>;
  /** Declared inputs, bound read-only (the postprocess-script). */
  roBinds?: Bind[];
  /**
   * Which /proc entries of PROC_MASKED_FILES, PROC_READONLY_DIRS and
   * PROC_EMPTY_DIRS exist on this kernel (bwrap cannot mount over a missing
   * one). Default: all of them. hostProcEntries() gives the real answer.
   */
  procPresent?: ReadonlySet<string>;
  /** The bounding-set helper; default: the host's setpriv as hostCapHelper() finds it. */
  helper?: CapHelper;
}

/**
 * bubblewrap argv (without `bwrap` itself) that runs `command` with `root` as /
 * in the sandbox described at the top of this file. It only builds the list;
 * the one look at the host is hostCapHelper(), when no `helper` is given.
 */
export function sandboxArgs(root: string, opts: SandboxOptions, command: readonly string[] = []): string[] {
  const present = (p: string) => !opts.procPresent || opts.procPresent.has(p);
  const helper = opts.helper ?? hostCapHelper();
  const args = [
    // First, so every later mount lands inside the image root.
    '--bind', root, '/',
    '--dev', '/dev',
    '--proc', '/proc',
    // A real /tmp is 1777: apt's gpgv step runs as _apt and writes its temp files there.
    '--perms', '1777', '--tmpfs', '/tmp',
    '--tmpfs', '/run',
    '--unshare-pid', '--unshare-ipc', '--unshare-uts', '--unshare-cgroup',
    ...(opts.network ? ['--ro-bind', '/etc/resolv.conf', '/etc/resolv.conf'] : ['--unshare-net']),
    '--die-with-parent',
    '--new-session',
    '--hostname', 'treecast-build',
  ];
  for (const f of PROC_MASKED_FILES) if (present(f)) args.push('--ro-bind', '/dev/null', f);
  // The host's /proc/sys shows the same sysctl tree; namespaced entries (net, ipc, uts) resolve against the reader's namespaces.
  for (const d of PROC_READONLY_DIRS) if (present(d)) args.push('--ro-bind', d, d);
  for (const d of PROC_EMPTY_DIRS) if (present(d)) args.push('--tmpfs', d, '--remount-ro', d);
  for (const b of [...(opts.roBinds ?? []), ...helper.binds]) args.push('--ro-bind', b.src, b.dest);
  args.push('--cap-drop', 'ALL');
  // SETPCAP only for setpriv, which drops it from every set before the command runs.
  for (const cap of [...SANDBOX_CAPS, 'CAP_SETPCAP']) args.push('--cap-add', cap);
  args.push('--clearenv');
  for (const [k, v] of Object.entries(sandboxEnv(opts))) args.push('--setenv', k, v);
  args.push('--chdir', '/');
  args.push(...helper.argv, ...command);
  return args;
}

/** The environment the command sees: SANDBOX_ENV plus SOURCE_DATE_EPOCH and TREECAST_IMAGE. */
export function sandboxEnv(opts: Pick<SandboxOptions, 'epoch' | 'image' | 'env'>): Record<string, string> {
  return {
    ...SANDBOX_ENV,
    ...opts.env,
    ...(opts.epoch !== undefined ? { SOURCE_DATE_EPOCH: String(opts.epoch) } : {}),
    ...(opts.image !== undefined ? { TREECAST_IMAGE: opts.image } : {}),
  };
}

/** setpriv's capability names: lower case without CAP_. */
const capName = (c: string) => c.replace(/^CAP_/, '').toLowerCase();

/**
 * The setpriv argv (relative to HELPER_DIR) that leaves exactly SANDBOX_CAPS
 * in the bounding, inheritable and ambient sets, then execs what follows `--`.
 */
export function setprivArgs(setpriv: string): string[] {
  const keep = ['-all', ...SANDBOX_CAPS.map((c) => `+${capName(c)}`)].join(',');
  return [setpriv, `--bounding-set=${keep}`, `--inh-caps=${keep}`, `--ambient-caps=${keep}`, '--'];
}

const LIB_DIRS = ['/lib/x86_64-linux-gnu', '/usr/lib/x86_64-linux-gnu', '/lib64', '/usr/lib64', '/lib', '/usr/lib'];
/** What Debian's util-linux setpriv links against (ldd /usr/bin/setpriv). */
const SETPRIV_LIBS = ['libcap-ng.so.0', 'libc.so.6'];
const LOADER = '/lib64/ld-linux-x86-64.so.2';

/**
 * The host's setpriv with its loader and libraries, run through the loader
 * with an explicit library path so the image's own libc is never involved.
 * Reads the host filesystem; a missing piece is a UserError naming it.
 */
export function hostCapHelper(exists: (p: string) => boolean = hostPathExists): CapHelper {
  const setpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find(exists);
  if (!setpriv) throw new UserError('setpriv (util-linux) is not installed: the sandbox needs it to clear the capability bounding set');
  if (!exists(LOADER)) throw new UserError(`${LOADER} is missing: the sandbox runs the host's setpriv through it`);
  const binds: Bind[] = [
    { src: LOADER, dest: `${HELPER_DIR}/ld.so` },
    { src: setpriv, dest: `${HELPER_DIR}/setpriv` },
  ];
  for (const lib of SETPRIV_LIBS) {
    const dir = LIB_DIRS.find((d) => exists(path.join(d, lib)));
    if (!dir) throw new UserError(`${lib} (needed by setpriv) is not in ${LIB_DIRS.join(', ')}`);
    binds.push({ src: path.join(dir, lib), dest: `${HELPER_DIR}/${lib}` });
  }
  return { binds, argv: [`${HELPER_DIR}/ld.so`, '--library-path', HELPER_DIR, ...setprivArgs(`${HELPER_DIR}/setpriv`)] };
}

/** The entries of the /proc mask lists that exist on the running kernel. */
export function hostProcEntries(exists: (p: string) => boolean = hostPathExists): Set<string> {
  return new Set([...PROC_MASKED_FILES, ...PROC_READONLY_DIRS, ...PROC_EMPTY_DIRS].filter((p) => exists(p)));
}
