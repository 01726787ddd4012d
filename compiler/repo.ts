/**
 * The repository of image specs treecast works on: found from --repo, the
 * nearest directory holding treecast.yaml, or the git top level. Every path in
 * a manifest resolves inside it, wherever treecast itself is installed.
 */
import { existsSync, readFileSync, statSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { UserError } from './diagnostics.js';
import type { RepoConfig } from './manifest/types.js';
import { parseYaml, plain } from './manifest/yaml.js';
import { checkSchema } from './manifest/schema.js';

export interface Repo {
  root: string;
  config: RepoConfig;
  configFile?: string;
  cacheDir: string;
  publishDir: string;
  publicUrl: string;
  arch: string;
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

export function openRepo(opts: { repo?: string; cwd?: string } = {}): Repo {
  const root = opts.repo ? path.resolve(opts.repo) : findRepoRoot(opts.cwd ?? process.cwd());
  if (!existsSync(root) || !statSync(root).isDirectory()) throw new UserError(`repository directory ${root} does not exist`);
  const configFile = path.join(root, 'treecast.yaml');
  let config: RepoConfig = {};
  if (existsSync(configFile)) {
    const text = readFileSync(configFile, 'utf8');
    const parsed = parseYaml(text, 'treecast.yaml');
    if (!parsed.ok) throw new UserError('invalid treecast.yaml', parsed.diagnostics);
    const diags = checkSchema('treecast', parsed.root);
    if (diags.length) throw new UserError('invalid treecast.yaml', diags);
    config = plain(parsed.root) as RepoConfig;
  }
  const inRoot = (p: string | undefined, dflt: string) => path.resolve(root, p ?? dflt);
  return {
    root,
    config,
    configFile: existsSync(configFile) ? configFile : undefined,
    cacheDir: process.env.TREECAST_CACHE_DIR ? path.resolve(process.env.TREECAST_CACHE_DIR) : inRoot(config['cache-dir'], '.treecast'),
    publishDir: inRoot(config.publish?.dir, 'public'),
    publicUrl: config.publish?.url ?? 'http://127.0.0.1:8080',
    arch: config.arch ?? 'x86_64',
  };
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
