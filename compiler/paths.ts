/**
 * Path safety. Manifests come from pull requests: every path they name is
 * resolved against its root and refused when it leaves it, before any read or write.
 */
import path from 'node:path';
import { realpathSync } from 'node:fs';

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
