/**
 * Path safety. Manifests come from pull requests: every path they name is
 * resolved against its root and refused when it leaves it, before any read or write.
 */
import path from 'node:path';
import { lstatSync, readdirSync, readlinkSync, realpathSync, statSync } from 'node:fs';

/** True when `p` is `root` or lies below it (purely lexical). */
export function isInside(root: string, p: string): boolean {
  const rel = path.relative(root, p);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/**
 * Resolve `rel` against `root` and refuse escapes, also through symlinks
 * that already exist on disk. Returns the absolute path or undefined.
 */
export function resolveInside(root: string, rel: string): string | undefined {
  const abs = path.resolve(root, rel);
  if (!isInside(root, abs)) return undefined;
  let real: string;
  try {
    real = realpathSync(abs);
  } catch {
    return abs; // does not exist (yet): the lexical check is all there is
  }
  return isInside(realpathSync(root), real) ? abs : undefined;
}

/** `/etc/../x` or `/etc//x` are not normalized image paths. */
export function isNormalizedAbsolute(p: string): boolean {
  return p.startsWith('/') && path.posix.normalize(p) === p && (p === '/' || !p.endsWith('/'));
}

/** Image paths: absolute within the image root, `..` never leaving it. */
export function imagePath(root: string, imageAbs: string): string {
  const joined = path.join(root, imageAbs);
  if (!isInside(root, joined)) throw new Error(`path ${imageAbs} leaves the image root`);
  return joined;
}

/** How a file is named to the user: relative to the repository root when inside it. */
export function displayPath(repoRoot: string, abs: string): string {
  return isInside(repoRoot, abs) ? path.relative(repoRoot, abs) || '.' : abs;
}

/** What an input policy needs to know about the repository (a Repo satisfies it). */
export interface RepoDirs {
  root: string;
  cacheDir: string;
  publishDir: string;
  /** Node tokens and keys (Repo.privateDir): guarded when given. */
  privateDir?: string;
  config?: { signing?: { 'gpg-homedir'?: string } };
}

/** A directory no input may be in or contain: it holds secrets or treecast's own output. */
export interface GuardedDir {
  abs: string;
  /** How a diagnostic names it: "the cache dir". */
  what: string;
  why: string;
}

export type RepoInputKind = 'file' | 'directory';

export type RepoInput =
  | { ok: true; /** The real path (symlinks resolved): what the build opens. */ path: string; /** The same, relative to the repository root. */ rel: string }
  | { ok: false; /** outside: lexically (`..`, absolute); symlink: through a link */ code: 'outside' | 'symlink' | 'forbidden' | 'missing' | 'type'; /** Follows the quoted input: `"x" ${reason}`. */ reason: string; hint?: string };

const GIT_WHY = "it holds the repository's credentials (the CI token) and is never an image input";

/**
 * Directories that are never inputs, besides every `.git`. `.treecast/` is
 * guarded even when TREECAST_CACHE_DIR moves the cache elsewhere, because
 * `treecast keygen` puts the secret signing key in `.treecast/gnupg` regardless.
 */
export function guardedDirs(repo: RepoDirs): GuardedDir[] {
  const keyWhy = 'it holds the secret signing key';
  const out: GuardedDir[] = [
    { abs: path.resolve(repo.cacheDir), what: 'the cache dir', why: 'it holds build state and the signing key made by treecast keygen' },
    { abs: path.resolve(repo.publishDir), what: 'the publish dir', why: "it is treecast's own output" },
  ];
  if (repo.privateDir) out.push({ abs: path.resolve(repo.privateDir), what: 'the private dir', why: 'it holds the node tokens and image keys' });
  const dflt = path.join(repo.root, '.treecast');
  if (!out.some((g) => g.abs === dflt)) out.push({ abs: dflt, what: 'the .treecast dir', why: `treecast keygen keeps the secret signing key there` });
  const homedir = repo.config?.signing?.['gpg-homedir'];
  if (homedir) out.push({ abs: path.resolve(repo.root, homedir), what: 'the signing homedir (signing.gpg-homedir)', why: keyWhy });
  return out;
}

/** `.GIT` is `.git` on case-insensitive filesystems, which is how git's own CVE-2014-9390 was exploited. */
const isGitName = (name: string) => name.toLowerCase() === '.git';

/**
 * Resolve a repository input named by a manifest (overlay, source file,
 * script, tree base, include) and apply the input policy: it stays inside the
 * repository, also through symlinks (a link may point anywhere inside it),
 * never goes through `.git` or a guarded dir, and a directory input never
 * contains one (directories are copied whole). `rel` is relative to the
 * repository root, or to `from` (an include's directory).
 * Validation and the build both call this, so what validation accepted is
 * exactly what the build opens: the real path.
 */
export function resolveRepoInput(repo: RepoDirs, rel: string, kind: RepoInputKind, from?: string): RepoInput {
  const root = path.resolve(repo.root);
  const lexical = path.resolve(from ?? root, rel);
  if (!isInside(root, lexical)) return { ok: false, code: 'outside', reason: 'is outside the repository', hint: 'paths are relative to the repository root and may not leave it' };
  const lexParts = path.relative(root, lexical).split(path.sep);
  // An absolute path also spells out the root's own components, which are not the input's to answer for.
  const written = path.isAbsolute(rel) ? lexParts : rel.split(/[\\/]+/);
  // Named as the repository sees it (lexParts); the written form still counts: `x/.git/../y` is refused too.
  const parts = [lexParts, written].find((p) => p.some(isGitName));
  if (parts) {
    return { ok: false, code: 'forbidden', reason: `is inside the git directory "${parts.slice(0, parts.findIndex(isGitName) + 1).join('/')}"`, hint: GIT_WHY };
  }
  const realRoot = realpathSync(root);
  const walked = walkInside(realRoot, path.relative(root, lexical));
  if ('loop' in walked) return { ok: false, code: 'type', reason: `goes through more than 40 symlinks (a loop at ${displayPath(realRoot, walked.loop)}?)` };
  if ('escape' in walked) {
    return {
      ok: false,
      code: 'symlink',
      reason: `leaves the repository through the symlink ${displayPath(realRoot, walked.escape.link)} -> ${walked.escape.target}`,
      hint: 'a symlink may point anywhere inside the repository, never out of it',
    };
  }
  const real = walked.real;
  const realRel = path.relative(realRoot, real);
  const realParts = realRel.split(path.sep);
  const gitIdx = realParts.findIndex(isGitName);
  if (gitIdx >= 0) return { ok: false, code: 'forbidden', reason: `is inside the git directory "${realParts.slice(0, gitIdx + 1).join('/')}" (through a symlink)`, hint: GIT_WHY };
  // A guarded dir holding the whole repository is the operator's own layout, not something a manifest can reach into.
  const guarded = guardedDirs(repo)
    .filter((g) => !isInside(g.abs, root))
    .map((g) => ({ ...g, real: realOrLexical(g.abs) }));
  for (const g of guarded) {
    if (isInside(g.abs, lexical) || isInside(g.real, real)) {
      const itself = lexical === g.abs || real === g.real;
      return { ok: false, code: 'forbidden', reason: `${itself ? 'is' : 'is inside'} ${g.what} "${displayPath(root, g.abs)}"`, hint: g.why };
    }
  }
  if (kind === 'directory') {
    const rootGit = path.join(realRoot, '.git');
    if (isInside(real, rootGit) && lstatSync(rootGit, { throwIfNoEntry: false })) {
      return { ok: false, code: 'forbidden', reason: 'contains the git directory ".git"', hint: `a directory input is copied whole; ${GIT_WHY}` };
    }
    for (const g of guarded) {
      if (isInside(lexical, g.abs) || isInside(real, g.real)) return { ok: false, code: 'forbidden', reason: `contains ${g.what} "${displayPath(root, g.abs)}"`, hint: `a directory input is copied whole; ${g.why}` };
    }
  }
  if (walked.missing) return { ok: false, code: 'missing', reason: 'does not exist in the repository' };
  const st = statSync(real);
  if (kind === 'directory' ? !st.isDirectory() : !st.isFile()) return { ok: false, code: 'type', reason: `is not a ${kind}` };
  if (kind === 'directory') {
    const git = findGitDir(real);
    if (git) return { ok: false, code: 'forbidden', reason: `contains the git directory "${path.relative(realRoot, git)}"`, hint: `a directory input is copied whole; ${GIT_WHY}` };
  }
  return { ok: true, path: real, rel: realRel === '' ? '.' : realRel };
}

/**
 * Where `rel` really is, following symlinks below `root`, or why it is not
 * inside it: for directories treecast.yaml names (cache-dir, publish.dir),
 * which may not exist yet.
 */
export function followInside(root: string, rel: string): { ok: true; real: string } | { ok: false; reason: string } {
  const lexical = path.resolve(root, rel);
  if (!isInside(root, lexical)) return { ok: false, reason: 'is outside the repository' };
  const realRoot = realpathSync(root);
  const walked = walkInside(realRoot, path.relative(root, lexical));
  if ('loop' in walked) return { ok: false, reason: `goes through more than 40 symlinks (a loop at ${displayPath(realRoot, walked.loop)}?)` };
  if ('escape' in walked) return { ok: false, reason: `leaves the repository through the symlink ${displayPath(realRoot, walked.escape.link)} -> ${walked.escape.target}` };
  return { ok: true, real: walked.real };
}

/** The real path of a repository input for the build sites, or undefined when the policy refuses it. */
export function repoInputPath(repo: RepoDirs, rel: string, kind: RepoInputKind): string | undefined {
  const r = resolveRepoInput(repo, rel, kind);
  return r.ok ? r.path : undefined;
}

/**
 * Follow `rel` below `realRoot` one component at a time, the way the kernel
 * would, and stop at the first symlink that points out of it. Deciding from the
 * link text (not from realpath of the target) also refuses links to targets that
 * do not exist, so the answer never tells whether a path outside exists.
 */
function walkInside(realRoot: string, rel: string): { real: string; missing: boolean } | { escape: { link: string; target: string } } | { loop: string } {
  const todo = rel.split(path.sep).filter((p) => p !== '' && p !== '.');
  let cur = realRoot;
  let links = 0;
  while (todo.length) {
    const part = todo.shift()!;
    if (part === '..') {
      cur = path.dirname(cur);
      // Only reachable after a symlink: the lexical path was checked before.
      if (!isInside(realRoot, cur)) return { escape: { link: cur, target: '..' } };
      continue;
    }
    const next = path.join(cur, part);
    const st = lstatSync(next, { throwIfNoEntry: false });
    if (!st) return { real: path.join(next, ...todo), missing: true };
    if (st.isSymbolicLink()) {
      const target = readlinkSync(next);
      const resolved = path.resolve(cur, target);
      if (++links > 40) return { loop: next };
      if (!isInside(realRoot, resolved)) return { escape: { link: next, target } };
      // Walk the link's target again from the root: links inside it are checked too.
      todo.unshift(...path.relative(realRoot, resolved).split(path.sep));
      cur = realRoot;
      continue;
    }
    if (todo.length && !st.isDirectory()) return { real: path.join(next, ...todo), missing: true };
    cur = next;
  }
  return { real: cur, missing: false };
}

function realOrLexical(abs: string): string {
  // A guarded dir that does not exist yet is compared by its nearest existing ancestor's real path.
  let dir = abs;
  const rest: string[] = [];
  for (;;) {
    try {
      return path.join(realpathSync(dir), ...rest);
    } catch {
      const parent = path.dirname(dir);
      if (parent === dir) return abs;
      rest.unshift(path.basename(dir));
      dir = parent;
    }
  }
}

/** The first `.git` below `dir` (symlinks not followed: copies never follow them either). */
function findGitDir(dir: string): string | undefined {
  const queue = [dir];
  while (queue.length) {
    const d = queue.shift()!;
    let entries;
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch {
      continue;
    }
    for (const e of entries) if (isGitName(e.name)) return path.join(d, e.name);
    for (const e of entries) if (e.isDirectory()) queue.push(path.join(d, e.name));
  }
  return undefined;
}
