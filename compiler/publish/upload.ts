/**
 * upload: the local publish tree -> where hosts read from (`publish --to DEST`),
 * with rsync, in an order that keeps every client consistent while it runs.
 *
 * The destination is being served while we write to it, so each pass only
 * adds things nothing points at yet, then moves the pointers:
 *   1. objects   repo/objects (not .commitmeta): content-addressed, so --ignore-existing
 *   2. content   repo/config, repo/deltas, repo/delta-indexes, signatures (.commitmeta), version dirs, keys/
 *   3. refs      repo/refs
 *   4. summary   repo/summary + repo/summary.sig in ONE run with --delay-updates
 *   5. links     images/<name>/latest, boot/, kickstart/
 *   6. index     index.json + index.html
 *   7. delete    old version dirs, pruned objects and deltas, only now that no
 *                uploaded ref, summary or index names them
 * Each pass is one rsync run. The order is a pure function (uploadPlan) so the
 * argv can be unit-tested; uploadTree runs it. docs/serving.md explains the
 * order and gives the same one for object stores.
 *
 * Before the local publish, downloadTree brings DEST's tree down (downloadPlan),
 * so a runner with an empty publish dir continues DEST's history instead of
 * replacing it.
 */
import { existsSync, mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { UsageError, UserError } from '../diagnostics.js';
import { requirePrograms, run } from '../exec.js';
import { info } from '../log.js';
import { withPublishLock } from './lock.js';
import { privateDirBeside } from '../repo.js';

export type Destination = { kind: 'local'; path: string } | { kind: 'ssh'; spec: string };

/**
 * DEST in rsync's own syntax: `[user@]host:path` (a colon before any slash)
 * is remote over SSH, anything else a local path. Never an rsync option: argv
 * goes straight to rsync, so a DEST like `--rsh=...` or `-e...` would run a
 * program of the caller's choosing.
 */
export function parseDestination(dest: string, cwd = process.cwd()): Destination {
  if (!dest) throw new UsageError('--to needs a destination: a directory or [user@]host:path');
  if (dest.startsWith('-')) throw new UsageError(`--to ${dest}: a destination may not start with '-' (write ./${dest} for a local directory of that name)`);
  if (/^rsync:\/\//i.test(dest) || /^[^/]*::/.test(dest)) {
    throw new UsageError(`--to ${dest}: rsync daemon destinations are not supported; use a local directory or [user@]host:path (over SSH)`);
  }
  if (/^[^/]*:/.test(dest)) {
    const host = dest.slice(0, dest.indexOf(':'));
    if (!host || /^@|@$/.test(host)) throw new UsageError(`--to ${dest}: expected [user@]host:path`);
    return { kind: 'ssh', spec: dest };
  }
  return { kind: 'local', path: path.resolve(cwd, dest) };
}

/** The rsync argument naming the destination directory (trailing slash: copy into it). */
export function destinationArg(d: Destination): string {
  if (d.kind === 'local') return d.path.endsWith('/') ? d.path : `${d.path}/`;
  // `host:` alone is the login's home directory; appending '/' would make it the root.
  return d.spec.endsWith(':') || d.spec.endsWith('/') ? d.spec : `${d.spec}/`;
}

export interface UploadPhase {
  name: string;
  /** What the pass carries, for the progress line. */
  what: string;
  argv: string[];
}

export interface UploadPlanOptions {
  /** Local publish directory. */
  source: string;
  dest: Destination;
  /** Remote shell for ssh destinations; undefined leaves it to rsync (RSYNC_RSH), default `ssh`. */
  rsh?: string;
  /** --bwlimit in KiB/s (tests slow the upload down to overlap it with pulls). */
  bwlimit?: number;
  /** Stream --info=progress2 (interactive terminals only). */
  progress?: boolean;
}

/**
 * Excluded in every pass. Excludes also protect the receiver's copies from
 * --delete, so the destination's own lock, temp and `.~tmp~` files stay.
 *  - dot names: the publish lock, `.staging-*` dirs, `.x.tmp-<pid>` files,
 *    version dirs retention moved aside; rsync's own temp files too
 *  - `<version>.old-<pid>-<ms>`: what swapIntoPlace left behind after a crash
 */
const COMMON_FILTERS = ['--exclude=.*', '--exclude=*.old-[0-9]*-[0-9]*'];

/**
 * The passes, in order, as rsync argv lists. Filters are anchored at the tree
 * root; rsync takes the first rule that matches, and descends only into
 * directories that are included, hence the explicit parent includes.
 */
export function uploadPlan(o: UploadPlanOptions): UploadPhase[] {
  // -r -l -t: recurse, symlinks as symlinks (images/<name>/latest), mtimes (so
  // unchanged files are skipped and HTTP Last-Modified stays the publisher's).
  // Not -o/-g/-D: owners mean nothing on a web host. Permissions are made
  // world-readable for whatever user serves the files. --safe-links drops a
  // symlink that would point out of the tree.
  const base = ['-rlt', '--perms', '--chmod=D755,F644', '--safe-links', '--stats'];
  if (o.dest.kind === 'ssh' && o.rsh) base.push('-e', o.rsh);
  if (o.bwlimit) base.push(`--bwlimit=${o.bwlimit}`);
  if (o.progress) base.push('--info=progress2');
  const src = o.source.endsWith('/') ? o.source : `${o.source}/`;
  // `--` ends the options: nothing after it is read as one, whatever the paths look like.
  const ends = ['--', src, destinationArg(o.dest)];
  const phase = (name: string, what: string, extra: string[], filters: string[]): UploadPhase => ({
    name,
    what,
    argv: [...base, ...extra, ...COMMON_FILTERS, ...filters.map((f) => (f.startsWith('- ') ? `--exclude=${f.slice(2)}` : `--include=${f}`)), '--exclude=*', ...ends],
  });
  return [
    // Objects never change once written (named by their checksum) and rsync
    // renames complete files into place, so an object already there is whole:
    // --ignore-existing skips the comparison. Detached metadata (.commitmeta:
    // the commit's signatures) is the exception, it can be rewritten; it goes
    // with the content pass.
    phase('objects', 'repo/objects', ['--ignore-existing'], ['/repo/', '/repo/objects/', '- /repo/objects/*/*.commitmeta', '/repo/objects/***']),
    // Everything else nothing points at yet. repo/delta-indexes/<commit>.index
    // (written by `ostree summary -u`) lists the deltas to a commit: a client
    // asks for it only once a summary names that commit. --delay-updates: files that change
    // (a re-made version dir, a regenerated delta's superblock and parts) are
    // renamed into place together at the end of the pass, not one by one.
    phase(
      'content',
      'repo/config, repo/deltas, repo/delta-indexes, signatures, version dirs, keys',
      ['--delay-updates'],
      ['/repo/', '/repo/config', '/repo/deltas/***', '/repo/delta-indexes/***', '/repo/objects/', '/repo/objects/*/', '/repo/objects/*/*.commitmeta', '/images/', '/images/*/', '- /images/*/latest', '/images/*/*/***', '/keys/***'],
    ),
    // Refs before the summary: a client that reads the summary still gets the
    // old commits (whose objects are all there); one that reads refs/heads
    // directly gets the new commit, whose objects and signatures are there.
    phase('refs', 'repo/refs', [], ['/repo/', '/repo/refs/***']),
    // summary and summary.sig must match or a verifying client refuses the
    // summary. No order of two separate uploads is safe: between them, every
    // client sees a mismatched pair for as long as the second upload takes
    // (sig first: new signature over the old summary; summary first: the other
    // way round). One run with --delay-updates writes both to temp names and
    // renames them back to back at the end: the window shrinks to the gap
    // between two rename() calls. A client whose two GETs straddle that instant
    // still gets a mismatched pair, fails that pull and succeeds on the next
    // (docs/serving.md).
    phase('summary', 'repo/summary, repo/summary.sig', ['--delay-updates'], ['/repo/', '/repo/summary', '/repo/summary.sig']),
    // The pointers people and installers follow, now that the commits they name
    // are in the summary. Together at the end of the pass (--delay-updates).
    phase('links', 'images/*/latest, boot/, kickstart/', ['--delay-updates'], ['/images/', '/images/*/', '/images/*/latest', '/boot/***', '/kickstart/***']),
    phase('index', 'index.json, index.html', ['--delay-updates'], ['/index.json', '/index.html']),
    // Last: remove what the local publish retired (old version dirs, pruned
    // objects and deltas). Until now a client mid-pull of the previous version
    // still finds its objects. --existing + --ignore-existing: transfer
    // nothing, only delete. Limited to the trees treecast prunes, so a wrong
    // DEST never loses anything else. The mirror refs that held retired
    // versions' commits go too (their commits are gone: fsck would fail on them).
    phase('delete', 'old versions, their mirror refs, pruned objects and deltas', ['--existing', '--ignore-existing', '--delete'], ['/images/***', '/repo/', '/repo/refs/', '/repo/refs/mirrors/***', '/repo/objects/***', '/repo/deltas/***', '/repo/delta-indexes/***']),
  ];
}

/**
 * Bring the destination's current tree down into the local publish dir, before
 * a local publish that is then uploaded (`publish --to`, `ci --to`). A fresh CI
 * runner has an empty publish dir: without this, publish would see no previous
 * commit (no static delta, retention blind to the real history) and the upload's
 * refs, summary, index and delete pass would replace what DEST holds with only
 * the new commits. Afterwards the local dir is a copy of DEST, so the publish
 * continues DEST's history and the upload sends only what it adds.
 *
 * Two passes, the reverse of the upload's order, because DEST may be served
 * (and, with a second publisher, written) meanwhile: first everything but the
 * objects (refs, summary, deltas, version dirs, links, index), then the objects
 * those name, which an upload always adds before the pointers and deletes only
 * after. Objects are immutable: --ignore-existing, so a local dir that already
 * mirrors DEST costs one listing. The first pass mirrors with --delete, limited
 * by the same filters as the upload (dot names, repo/tmp, repo/state never
 * touched; objects are never deleted here, prune does that).
 */
export function downloadPlan(o: UploadPlanOptions): UploadPhase[] {
  const base = ['-rlt', '--safe-links', '--stats'];
  if (o.dest.kind === 'ssh' && o.rsh) base.push('-e', o.rsh);
  if (o.bwlimit) base.push(`--bwlimit=${o.bwlimit}`);
  if (o.progress) base.push('--info=progress2');
  const local = o.source.endsWith('/') ? o.source : `${o.source}/`;
  // Reversed: the destination is the source of this copy.
  const ends = ['--', destinationArg(o.dest), local];
  const phase = (name: string, what: string, extra: string[], filters: string[]): UploadPhase => ({
    name,
    what,
    argv: [...base, ...extra, ...COMMON_FILTERS, ...filters.map((f) => (f.startsWith('- ') ? `--exclude=${f.slice(2)}` : `--include=${f}`)), '--exclude=*', ...ends],
  });
  return [
    phase('pointers', 'repo/config, refs, summary, deltas, signatures, version dirs, links, keys, index', ['--delete'], [
      '/repo/',
      '/repo/config',
      '/repo/refs/***',
      '/repo/summary',
      '/repo/summary.sig',
      '/repo/deltas/***',
      '/repo/delta-indexes/***',
      '/repo/objects/',
      '/repo/objects/*/',
      '/repo/objects/*/*.commitmeta',
      '/images/***',
      '/boot/***',
      '/kickstart/***',
      '/keys/***',
      '/index.json',
      '/index.html',
    ]),
    phase('objects', 'repo/objects', ['--ignore-existing'], ['/repo/', '/repo/objects/', '- /repo/objects/*/*.commitmeta', '/repo/objects/***']),
  ];
}

/**
 * Whether DEST holds a published tree (its repo/config), asked of rsync itself
 * so a local and an SSH destination are answered the same way. rsync exits 23
 * when the path does not exist: a DEST that does not exist yet, or holds no
 * tree, is an empty history.
 */
async function destinationHasTree(dest: Destination, rsh: string | undefined): Promise<boolean> {
  return rsyncPathExists(dest, 'repo/config', rsh);
}

/** Whether `rel` exists under `dest`, asked of rsync (exit 23 with "No such file or directory": it does not). */
async function rsyncPathExists(dest: Destination, rel: string, rsh: string | undefined): Promise<boolean> {
  const argv = ['--list-only', ...(rsh ? ['-e', rsh] : []), '--', `${destinationArg(dest)}${rel}`];
  const r = await run('rsync', argv, { env: { LC_ALL: 'C' }, allowFailure: true });
  if (r.exitCode === 0) return true;
  if (r.exitCode === 23 && /No such file or directory/.test(r.stderr)) return false;
  throw new UserError(`reading ${dest.kind === 'local' ? dest.path : dest.spec} with rsync failed (exit ${r.exitCode}): ${r.stderr.trim().split('\n')[0]}`);
}

export interface DownloadResult {
  dest: string;
  /** False when DEST held no published tree (nothing was brought down). */
  found: boolean;
  phases: ({ name: string } & RsyncStats)[];
}

/**
 * DEST's private tree: `private` beside DEST, as Repo.privateDir is beside the
 * publish dir (keys of encrypted images, node tokens and overlays). A DEST with
 * no parent (an SSH login's home itself) has no place for one that a web
 * server of DEST would not also serve: refused.
 */
export function privateDestination(d: Destination): Destination {
  if (d.kind === 'local') return { kind: 'local', path: privateDirBeside(d.path) };
  const colon = d.spec.indexOf(':');
  const host = d.spec.slice(0, colon + 1);
  const dir = d.spec.slice(colon + 1).replace(/\/+$/, '');
  if (!dir || dir === '.' || dir === '~') throw new UserError(`--to ${d.spec}: the private tree (keys, node tokens) goes beside DEST, and DEST names no directory with a parent; name one, e.g. ${host}srv/treecast/public`);
  const parent = dir.includes('/') ? dir.slice(0, dir.lastIndexOf('/')) : '';
  const prefix = parent ? `${parent}/` : dir.startsWith('/') ? '/' : '';
  return { kind: 'ssh', spec: `${host}${prefix}private` };
}

/**
 * rsync the private tree between here and DEST's (see privateDestination),
 * modes kept (0700 dirs, 0600 files). Down: the local private tree becomes
 * DEST's (nothing there yet: left as it is), so a fresh CI runner keeps the
 * fleet's tokens and keys instead of making new ones. Up: `del` removes what
 * the local tree no longer holds (keys of retired versions, removed nodes).
 */
async function syncPrivate(direction: 'down' | 'up', localPrivate: string, dest: Destination, o: { del: boolean; rsh?: string }): Promise<RsyncStats | undefined> {
  const remote = privateDestination(dest);
  const remoteArg = destinationArg(remote);
  const rsh = o.rsh ? ['-e', o.rsh] : [];
  if (direction === 'down') {
    if (!(await rsyncPathExists(remote, '', o.rsh))) return undefined;
    mkdirSync(localPrivate, { recursive: true, mode: 0o700 });
  } else if (!existsSync(localPrivate)) return undefined;
  const [from, to] = direction === 'down' ? [remoteArg, `${localPrivate}/`] : [`${localPrivate}/`, remoteArg];
  const r = await run('rsync', ['-a', '--stats', ...(o.del ? ['--delete'] : []), ...rsh, '--', from, to], { env: { LC_ALL: 'C' } });
  return parseRsyncStats(r.stdout);
}

/** Make the local publish dir `local` a copy of what DEST publishes (see downloadPlan), under the local publish lock; with `privateDir`, the private tree too. */
export async function downloadTree(local: string, dest: Destination, o: { progress?: boolean; privateDir?: string } = {}): Promise<DownloadResult> {
  await checkDestination(local, dest);
  mkdirSync(local, { recursive: true });
  const rsh = dest.kind === 'ssh' && !process.env.RSYNC_RSH ? 'ssh' : undefined;
  const shown = dest.kind === 'local' ? dest.path : dest.spec;
  return withPublishLock(local, async () => {
    if (o.privateDir) {
      const p = await syncPrivate('down', o.privateDir, dest, { del: true, rsh });
      if (p) info(`download private tree: ${p.transferred} of ${p.files} entries received (keys, node tokens and overlays)`);
    }
    if (!(await destinationHasTree(dest, rsh))) {
      info(`download: nothing published at ${shown} yet; the publish starts a new history there`);
      return { dest: shown, found: false, phases: [] };
    }
    const plan = downloadPlan({ source: local, dest, rsh, progress: o.progress });
    const phases: DownloadResult['phases'] = [];
    for (const [i, p] of plan.entries()) {
      info(`download ${i + 1}/${plan.length} ${p.name}: ${p.what} <- ${shown}`);
      const r = await run('rsync', p.argv, { env: { LC_ALL: 'C' }, inherit: o.progress });
      const s = parseRsyncStats(r.stdout);
      phases.push({ name: p.name, ...s });
      info(`  ${p.name}: ${s.transferred} of ${s.files} entries received, ${formatBytes(s.bytes)}${s.deleted ? `, ${s.deleted} deleted` : ''}`);
    }
    return { dest: shown, found: true, phases };
  });
}

export interface RsyncStats {
  files: number;
  transferred: number;
  bytes: number;
  deleted: number;
}

/** The figures of rsync --stats (run with LC_ALL=C; digits may carry ',' separators). */
export function parseRsyncStats(out: string): RsyncStats {
  const num = (re: RegExp) => {
    const m = re.exec(out);
    return m ? Number(m[1]!.replace(/[,.]/g, '')) : 0;
  };
  return {
    files: num(/^Number of files: ([\d,.]+)/m),
    transferred: num(/^Number of regular files transferred: ([\d,.]+)/m),
    bytes: num(/^Total transferred file size: ([\d,.]+)/m),
    deleted: num(/^Number of deleted files: ([\d,.]+)/m),
  };
}

export interface UploadResult {
  dest: string;
  phases: ({ name: string } & RsyncStats)[];
}

/**
 * Upload the publish tree `source` to `dest`, holding the local publish lock
 * so a concurrent publish (watch, another ci) cannot change the tree between
 * passes.
 */
export async function uploadTree(source: string, dest: Destination, o: { progress?: boolean; privateDir?: string } = {}): Promise<UploadResult> {
  if (!existsSync(path.join(source, 'repo', 'config'))) throw new UserError(`${source}: nothing published yet (no repo/config); run treecast publish first`);
  await checkDestination(source, dest);
  const bw = process.env.TREECAST_UPLOAD_BWLIMIT;
  const plan = uploadPlan({
    source,
    dest,
    rsh: dest.kind === 'ssh' && !process.env.RSYNC_RSH ? 'ssh' : undefined,
    bwlimit: bw && /^\d+$/.test(bw) ? Number(bw) : undefined,
    progress: o.progress,
  });
  const shown = dest.kind === 'local' ? dest.path : dest.spec;
  const rsh = dest.kind === 'ssh' && !process.env.RSYNC_RSH ? 'ssh' : undefined;
  return withPublishLock(source, async () => {
    const phases: UploadResult['phases'] = [];
    // New keys and tokens before any version or boot script that needs them appears at DEST.
    if (o.privateDir) {
      const p = await syncPrivate('up', o.privateDir, dest, { del: false, rsh });
      if (p) info(`upload private tree: ${p.transferred} of ${p.files} entries sent`);
    }
    for (const [i, p] of plan.entries()) {
      info(`upload ${i + 1}/${plan.length} ${p.name}: ${p.what} -> ${shown}`);
      const r = await run('rsync', p.argv, { env: { LC_ALL: 'C' }, inherit: o.progress });
      const s = parseRsyncStats(r.stdout);
      phases.push({ name: p.name, ...s });
      info(`  ${p.name}: ${s.transferred} of ${s.files} entries sent, ${formatBytes(s.bytes)}${s.deleted ? `, ${s.deleted} deleted` : ''}`);
    }
    // Keys of retired versions and removed nodes go last, once nothing published at DEST names them.
    if (o.privateDir) await syncPrivate('up', o.privateDir, dest, { del: true, rsh });
    return { dest: shown, phases };
  });
}

/**
 * Before any work (the commands call it ahead of the local publish): rsync is
 * installed; a local DEST's parent exists (rsync makes only the last
 * component) and DEST is not the tree or inside it (rsync would copy the tree
 * into itself). An SSH destination is only known to rsync; its errors name it.
 */
export async function checkDestination(source: string, d: Destination): Promise<void> {
  await requirePrograms(['rsync']);
  if (d.kind !== 'local') return;
  const dest = d.path;
  const src = path.resolve(source);
  if (dest === src || dest.startsWith(`${src}/`)) throw new UsageError(`--to ${dest}: the destination is the publish directory or inside it`);
  if (existsSync(dest)) {
    if (!statSync(dest).isDirectory()) throw new UserError(`--to ${dest}: exists and is not a directory`);
    return;
  }
  const parent = path.dirname(dest);
  if (!existsSync(parent) || !statSync(parent).isDirectory()) throw new UserError(`--to ${dest}: the parent directory ${parent} does not exist`);
}

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(1)} ${units[u]}`;
}
