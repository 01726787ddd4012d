/**
 * gc deletes, so before it does: every path it will remove lies inside the
 * cache dir once the links on the way are resolved, none of them holds or
 * lies inside the publish dir, and the directories it lists are not symlinks
 * (removeBuildLeftovers and rm would follow those out of the cache).
 */
import { lstatSync, readdirSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { UserError } from '../diagnostics.js';
import { isInside } from '../paths.js';
import type { Repo } from '../repo.js';

const real = (p: string) => {
  try {
    return realpathSync(p);
  } catch {
    return path.resolve(p);
  }
};

/** The cache subdirectories gc reads and removes in: each must be a real directory or absent. */
export function checkCacheLayout(repo: Repo): void {
  const linked: string[] = [];
  const isLink = (p: string) => lstatSync(p, { throwIfNoEntry: false })?.isSymbolicLink() === true;
  for (const d of ['tmp', 'out', 'apt-archives', 'repo']) if (isLink(path.join(repo.cacheDir, d))) linked.push(d);
  const out = path.join(repo.cacheDir, 'out');
  if (!linked.includes('out') && lstatSync(out, { throwIfNoEntry: false })?.isDirectory()) {
    for (const e of readdirSync(out)) if (isLink(path.join(out, e))) linked.push(`out/${e}`);
  }
  if (linked.length) {
    throw new UserError(
      `gc does not follow symlinks out of the cache dir ${repo.cacheDir}, and ${linked.map((l) => `"${l}"`).join(', ')} ${linked.length > 1 ? 'are symlinks' : 'is a symlink'}: ` +
        `treecast never makes them; remove or replace ${linked.length > 1 ? 'them' : 'it'} with a directory, then run gc again`,
    );
  }
}

/** Refuse any path outside the cache dir or overlapping the publish dir (`rel` relative to the cache dir). */
export function checkRemovable(repo: Repo, rels: string[]): void {
  const cache = real(repo.cacheDir);
  const publish = real(repo.publishDir);
  for (const rel of rels) {
    const lexical = path.resolve(repo.cacheDir, rel);
    const abs = path.join(real(path.dirname(lexical)), path.basename(lexical));
    if (!isInside(repo.cacheDir, lexical) || !isInside(cache, abs) || abs === cache) throw new UserError(`gc refuses to remove "${rel}": it resolves to ${abs}, outside the cache dir ${cache}`);
    if (isInside(publish, abs) || isInside(abs, publish)) throw new UserError(`gc refuses to remove "${rel}": the publish dir ${publish} is there (TREECAST_PUBLISH_DIR / publish.dir inside the cache dir)`);
  }
}
