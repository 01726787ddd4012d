import { run } from '../exec.js';
import { UserError } from '../diagnostics.js';
import { debug } from '../log.js';
import { tupleArrayVariant } from '../compile/ostree.js';
import { unshareForXattrsIn } from '../compile/rootfs.js';
import type { BuildContext } from './step.js';

export interface CommitInfo {
  version: string;
  parent?: string;
  manifestSha256: string;
  inputHash: string;
  gitCommit: string;
}

/** `ostree commit` argv: pure, so tests can check it. The ref is only moved once the commit is complete. */
export function commitArgs(ctx: Pick<BuildContext, 'localRepo' | 'ref' | 'root' | 'epoch' | 'manifest' | 'packages' | 'kernels'>, info: CommitInfo): string[] {
  const meta: Record<string, string> = {
    version: info.version,
    'treecast.name': ctx.manifest.name,
    'treecast.manifest-sha256': info.manifestSha256,
    'treecast.input-hash': info.inputHash,
    'treecast.git-commit': info.gitCommit,
    'treecast.source-date-epoch': String(ctx.epoch),
  };
  for (const [k, v] of Object.entries(ctx.manifest.metadata ?? {})) meta[`treecast.meta.${k}`] = String(v);
  const args = [
    'commit',
    `--repo=${ctx.localRepo}`,
    `--branch=${ctx.ref}`,
    `--tree=dir=${ctx.root}`,
    `--timestamp=@${ctx.epoch}`,
    `--subject=${ctx.manifest.name} ${info.version}`,
    info.parent ? `--parent=${info.parent}` : '--parent=none',
    // Not --no-xattrs: stripXattrs has removed every xattr of the root, so
    // ostree records none, as --no-xattrs did (same checksums), and it can
    // take a file still hardlinked to an object as that object without
    // reading it (ostree 2022.7 ignores the speedup with --no-xattrs).
    '--link-checkout-speedup',
    // No ostree.ref-binding: a promotion points stream refs (stable, ...) at this very
    // commit, and clients refuse a commit under a ref it is not bound to. Which refs
    // may carry it is the signed summary's business (SECURITY.md).
    '--no-bindings',
    '--generate-sizes',
  ];
  // ostree.bootable and ostree.linux (the kernel version), which ostree, bootc and their tooling read.
  if (ctx.kernels?.length) args.push('--bootable');
  for (const [k, v] of Object.entries(meta)) args.push(`--add-metadata-string=${k}=${v}`);
  args.push(`--add-metadata=treecast.packages=${tupleArrayVariant(ctx.packages.map((p) => [p.name, p.version, p.arch]), 3)}`);
  return args;
}

export async function commitTree(ctx: BuildContext, info: CommitInfo): Promise<string> {
  await stripXattrs(ctx.root, ctx.signal);
  const r = await run('ostree', commitArgs(ctx, info), { signal: ctx.signal });
  return r.stdout.trim();
}

/**
 * `getfattr` argv listing the names of every xattr of every entry under the
 * current directory: one llistxattr per entry, no values read, symlinks
 * neither followed (-h) nor descended (the -R walk is physical), so a link
 * of the image never leads it to the host.
 */
export const XATTR_LIST_ARGS = ['--recursive', '--no-dereference', '--match=-', '--', '.'];

export interface XattrEntry {
  /** Relative to the listed directory ("etc/x", "." for itself); undefined when the name is not UTF-8. */
  path?: string;
  /** For messages (bytes that are not UTF-8 shown as U+FFFD). */
  printed: string;
  names: string[];
}

/**
 * getfattr escapes a backslash as `\\\\` and control bytes as `\\ooo`; other
 * bytes come as they are. `s` holds bytes as latin1 characters (one each).
 */
function unescapeGetfattr(s: string): Buffer {
  const out = s.replace(/\\(\\|[0-7]{3})/g, (_, e: string) => (e === '\\' ? '\\' : String.fromCharCode(parseInt(e, 8) & 0xff)));
  return Buffer.from(out, 'latin1');
}

/** The name as a string, or undefined when its bytes are not UTF-8 (a program's argv could not carry it). */
function utf8(b: Buffer): string | undefined {
  const s = b.toString('utf8');
  return Buffer.from(s, 'utf8').equals(b) ? s : undefined;
}

/**
 * Parse getfattr's listing (its stdout as bytes): `# file: NAME`, then one
 * xattr name a line, then a blank line. Pure.
 */
export function parseXattrListing(out: Buffer): XattrEntry[] {
  const entries: XattrEntry[] = [];
  let cur: XattrEntry | undefined;
  for (const line of out.toString('latin1').split('\n')) {
    if (line.startsWith('# file: ')) {
      const printed = line.slice('# file: '.length);
      const name = unescapeGetfattr(printed);
      cur = { path: utf8(name), printed: name.toString('utf8'), names: [] };
      entries.push(cur);
    } else if (line && cur) {
      const name = utf8(unescapeGetfattr(line));
      if (name === undefined) cur.path = undefined; // setfattr could not be given it either
      else cur.names.push(name);
    }
  }
  return entries.filter((e) => e.names.length);
}

/** At most this many paths per setfattr call, well under the argv limit. */
const SETFATTR_BATCH = 1000;

/**
 * Remove every xattr of every file, link and directory of the image root
 * before it is committed, so that the commit records none: what the overlay
 * leaves on what it copied up (trusted.overlay.origin on files, with some
 * kernels and options), what a postprocess script set (user.*), what the
 * host adds (inherited ACLs).
 * security.capability goes too: commits made with --no-xattrs never carried
 * file capabilities, and keeping them now would change what an image means
 * (a capability an image needs is set at boot, or the binary stays setuid).
 *
 * The whole root is listed, not only what a step changed: one llistxattr per
 * entry, 0.3 s for 64,557 entries (docs/layers.md), and nothing a step did
 * can slip past it. Files still hardlinked to repository objects carry no
 * xattr (the repository's commits were made without), so only what changed
 * has anything to remove; an entry with xattrs and more than one link gets
 * an inode of its own first (unshareForXattrsIn), never a removexattr through
 * a repository object. When anything was removed, a second listing proves
 * the root clean: a name setfattr cannot be given (not UTF-8) fails the
 * build rather than the commit carrying its xattrs.
 */
export async function stripXattrs(root: string, signal?: AbortSignal): Promise<number> {
  const list = async () => parseXattrListing((await run('getfattr', XATTR_LIST_ARGS, { cwd: root, signal, progress: false, binary: true })).stdoutBytes ?? Buffer.alloc(0));
  const found = await list();
  if (!found.length) return 0;
  const byName = new Map<string, string[]>();
  for (const e of found) {
    if (e.path === undefined || unshareForXattrsIn(root, e.path)) continue;
    for (const name of e.names) {
      const paths = byName.get(name) ?? [];
      paths.push(e.path);
      byName.set(name, paths);
    }
  }
  for (const [name, paths] of byName) {
    for (let i = 0; i < paths.length; i += SETFATTR_BATCH) {
      await run('setfattr', ['--no-dereference', `--remove=${name}`, '--', ...paths.slice(i, i + SETFATTR_BATCH)], { cwd: root, signal, progress: false });
    }
  }
  const left = await list();
  if (left.length) {
    const shown = left.slice(0, 5).map((e) => `${e.printed}: ${e.names.join(', ')}`).join('\n  ');
    throw new UserError(`could not remove these xattrs from the image root before its commit (a file name that is not UTF-8?):\n  ${shown}\nrename the file in the step that makes it, or remove its xattrs there`);
  }
  debug(`removed the xattrs of ${found.length} entries of the image root before its commit`);
  return found.length;
}
