/**
 * The repository of image specs treecast works on: found from --repo, the
 * nearest directory holding treecast.yaml, or the git top level. Every path in
 * a manifest resolves inside it, wherever treecast itself is installed.
 */
import { existsSync, readFileSync, statSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { keyPath, UserError, type Diagnostic } from './diagnostics.js';
import type { RepoConfig } from './manifest/types.js';
import { isBlankYaml, parseYaml, plain, type LNode } from './manifest/yaml.js';
import { checkSchema, locate } from './manifest/schema.js';
import { followInside, isInside, resolveRepoInput, type RepoDirs } from './paths.js';

export interface Repo {
  root: string;
  config: RepoConfig;
  configFile?: string;
  cacheDir: string;
  publishDir: string;
  /**
   * The private tree beside the public one (confluent's /var/lib/confluent/private):
   * node tokens, node overlay archives, image keys. Served only to nodes with a token.
   */
  privateDir: string;
  publicUrl: string;
  arch: string;
}

/** The private tree beside a publish dir (confluent's /var/lib/confluent/{public,private}). */
export function privateDirBeside(publishDir: string): string {
  return path.join(path.dirname(path.resolve(publishDir)), 'private');
}

export function findRepoRoot(start: string): string {
  let dir = path.resolve(start);
  let gitTop: string | undefined;
  for (;;) {
    if (existsSync(path.join(dir, 'treecast.yaml'))) return dir;
    if (!gitTop && existsSync(path.join(dir, '.git'))) gitTop = dir;
    const parent = path.dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  return gitTop ?? path.resolve(start);
}

/**
 * treecast.yaml arrives with pull requests like the manifests: the directories
 * it names (cache-dir, publish.dir) must stay inside the repository, or a PR
 * could make publish write (and retention delete) anywhere, e.g. /etc. The
 * operator's TREECAST_CACHE_DIR and TREECAST_PUBLISH_DIR (and `publish --dir`,
 * `serve --dir`) may point anywhere.
 */
export function openRepo(opts: { repo?: string; cwd?: string } = {}): Repo {
  const root = opts.repo ? path.resolve(opts.repo) : findRepoRoot(opts.cwd ?? process.cwd());
  if (!existsSync(root) || !statSync(root).isDirectory()) throw new UserError(`repository directory ${root} does not exist`);
  const configFile = path.join(root, 'treecast.yaml');
  const defaults: RepoDirs = { root, cacheDir: path.join(root, '.treecast'), publishDir: path.join(root, 'public') };
  let config: RepoConfig = {};
  if (existsSync(configFile)) {
    const where = resolveRepoInput(defaults, 'treecast.yaml', 'file');
    if (!where.ok) throw new UserError('invalid treecast.yaml', [{ loc: { file: 'treecast.yaml', line: 1, col: 1 }, message: `"treecast.yaml" ${where.reason}`, hint: where.hint }]);
    const text = readFileSync(where.path, 'utf8');
    // Every key is optional: an empty or comments-only treecast.yaml means the defaults (only a manifest must say something).
    if (!isBlankYaml(text)) {
      const parsed = parseYaml(text, 'treecast.yaml');
      if (!parsed.ok) throw new UserError('invalid treecast.yaml', parsed.diagnostics);
      const diags = checkSchema('treecast', parsed.root);
      if (diags.length) throw new UserError('invalid treecast.yaml', diags);
      config = plain(parsed.root) as RepoConfig;
      const policy = checkConfigPaths(root, config, parsed.root);
      if (policy.length) throw new UserError('invalid treecast.yaml', policy);
    }
  }
  const inRoot = (p: string | undefined, dflt: string) => path.resolve(root, p ?? dflt);
  const fromEnv = (name: string) => (process.env[name] ? path.resolve(process.env[name]!) : undefined);
  const publishDir = fromEnv('TREECAST_PUBLISH_DIR') ?? inRoot(config.publish?.dir, 'public');
  return {
    root,
    config,
    configFile: existsSync(configFile) ? configFile : undefined,
    cacheDir: fromEnv('TREECAST_CACHE_DIR') ?? inRoot(config['cache-dir'], '.treecast'),
    publishDir,
    privateDir: fromEnv('TREECAST_PRIVATE_DIR') ?? privateDirBeside(publishDir),
    publicUrl: config.publish?.url ?? 'http://127.0.0.1:8080',
    arch: config.arch ?? 'x86_64',
  };
}

/** The directories the input policy guards for a repository root: from its treecast.yaml, else the defaults. */
export function repoDirsOf(root: string): RepoDirs {
  try {
    return openRepo({ repo: root });
  } catch {
    // An invalid treecast.yaml is reported by whoever opened the repository; the defaults still guard.
    const publishDir = process.env.TREECAST_PUBLISH_DIR ? path.resolve(process.env.TREECAST_PUBLISH_DIR) : path.resolve(root, 'public');
    return {
      root: path.resolve(root),
      cacheDir: process.env.TREECAST_CACHE_DIR ? path.resolve(process.env.TREECAST_CACHE_DIR) : path.resolve(root, '.treecast'),
      publishDir,
      privateDir: process.env.TREECAST_PRIVATE_DIR ? path.resolve(process.env.TREECAST_PRIVATE_DIR) : privateDirBeside(publishDir),
    };
  }
}

const isGit = (part: string) => part.toLowerCase() === '.git';

function checkConfigPaths(root: string, config: RepoConfig, tree: LNode): Diagnostic[] {
  const out: Diagnostic[] = [];
  const at = (segs: (string | number)[], message: string, hint?: string) => out.push({ loc: locate(tree, segs), path: keyPath(segs), message, hint });
  const dirHint = 'treecast.yaml comes with pull requests, so the directories it names stay inside the repository; point them elsewhere with TREECAST_CACHE_DIR / TREECAST_PUBLISH_DIR';
  const dir = (segs: (string | number)[], value: string | undefined) => {
    if (value === undefined) return;
    const abs = path.resolve(root, value);
    if (!isInside(root, abs)) return at(segs, `"${value}" is outside the repository`, dirHint);
    if (abs === root) return at(segs, `"${value}" is the repository root`, 'name a directory inside it, e.g. public');
    const parts = path.relative(root, abs).split(path.sep);
    if (parts.some(isGit)) return at(segs, `"${value}" is inside the git directory`, 'treecast must never write into .git');
    const real = followInside(root, value);
    if (!real.ok) return at(segs, `"${value}" ${real.reason}`, dirHint);
  };
  dir(['cache-dir'], config['cache-dir']);
  dir(['publish', 'dir'], config.publish?.dir);
  (config.images ?? []).forEach((g, i) => {
    const parts = g.split('/');
    if (path.isAbsolute(g) || parts.includes('..')) at(['images', i], `"${g}" reaches outside the repository`, 'image globs are relative to the repository root, without ".."');
    else if (parts.some(isGit)) at(['images', i], `"${g}" reaches into the git directory`, "the git directory holds the repository's credentials and is never an input");
  });
  return out;
}

/** Image manifests of the repository (globs from treecast.yaml), sorted. */
export function listImageFiles(repo: Repo): string[] {
  const globs = repo.config.images ?? ['images/*.yaml', 'images/*.yml'];
  const out = new Set<string>();
  for (const g of globs) for (const f of expandGlob(repo.root, g)) out.add(f);
  return [...out].sort();
}

/** Minimal glob: `*` and `?` within a path part, `**` across parts. Enough for manifest lists. */
export function expandGlob(root: string, pattern: string): string[] {
  const parts = pattern.split('/').filter(Boolean);
  const results: string[] = [];
  const walk = (dir: string, i: number): void => {
    if (i === parts.length) {
      results.push(dir);
      return;
    }
    const part = parts[i]!;
    if (part === '**') {
      walk(dir, i + 1);
      for (const e of safeReaddir(dir)) if (e.isDirectory() && !e.name.startsWith('.')) walk(path.join(dir, e.name), i);
      return;
    }
    if (!/[*?[]/.test(part)) {
      const next = path.join(dir, part);
      if (existsSync(next)) walk(next, i + 1);
      return;
    }
    const re = globPartToRegExp(part);
    for (const e of safeReaddir(dir)) if (re.test(e.name) && !e.name.startsWith('.')) walk(path.join(dir, e.name), i + 1);
  };
  walk(root, 0);
  return results.filter((f) => statSync(f).isFile());
}

export function globPartToRegExp(part: string): RegExp {
  const src = part.replace(/[.+^${}()|\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]');
  return new RegExp(`^${src}$`);
}

function safeReaddir(dir: string) {
  try {
    return readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
}
