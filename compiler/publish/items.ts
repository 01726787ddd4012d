/** What publish takes: each selected image's built commit and its emitted artifacts. */
import path from 'node:path';
import { localRepoPath } from '../compile/build.js';
import { historyRepoPath, PUBLISHED_REMOTE, readEncryptedTip } from '../compile/remote-history.js';
import { outRoot, readManifestJson } from '../compile/emit.js';
import { commitMetadata, revParse } from '../compile/ostree.js';
import { UserError } from '../diagnostics.js';
import { defaultRef } from '../images.js';
import { info } from '../log.js';
import type { ValidManifest } from '../manifest/validate.js';
import type { Repo } from '../repo.js';
import type { PublishItem } from './publish.js';

/** An image with no local build whose published commit is current: nothing to publish. */
export interface UpToDateItem {
  name: string;
  ref: string;
  commit: string;
  version: string;
}

/**
 * The published tip of `ref` as a build with remote history recorded it in one
 * of the caches (`published-history`: the tips it read over HTTP). A build that
 * found the image up to date with the published tree leaves only that record:
 * no local ref, no artifacts. Without such a record (no build ran, or ran
 * without publish.url) the image has simply not been built.
 */
async function publishedTip(repo: Repo, ref: string, cacheDirs: string[]): Promise<UpToDateItem | undefined> {
  for (const cache of cacheDirs) {
    const hrepo = historyRepoPath({ ...repo, cacheDir: cache });
    const commit = await revParse(hrepo, `${PUBLISHED_REMOTE}:${ref}`);
    if (commit) return { name: '', ref, commit, version: (await commitMetadata(hrepo, commit, 'version')) ?? '' };
    // An encrypted image has no published ref: the build recorded its tip from the public MANIFEST.json.
    const enc = readEncryptedTip({ ...repo, cacheDir: cache }, ref);
    if (enc) return { name: '', ref, commit: enc.commit, version: enc.version ?? '' };
  }
  return undefined;
}

export const notBuiltError = (name: string) => new UserError(`${name} has not been built yet (run: treecast build ${name})`);

/**
 * `cacheDirs`: build caches to take results from — the repository's own by
 * default; in a CI matrix, one per build job (the publish job merges them).
 * An image without a local build whose ref is published (build reported it
 * up to date with the published tree: its commit exists only there) is
 * skipped with a note and handed to `o.onUpToDate`; one that is neither built
 * nor published is an error, unless `o.onNotBuilt` takes it (returns true).
 */
export async function builtItems(
  repo: Repo,
  images: ValidManifest[],
  cacheDirs: string[] = [repo.cacheDir],
  o: { onUpToDate?: (u: UpToDateItem) => void; onNotBuilt?: (img: ValidManifest) => boolean } = {},
): Promise<PublishItem[]> {
  const items: PublishItem[] = [];
  for (const img of images) {
    const m = img.manifest;
    const ref = defaultRef(repo, m);
    let found: { cache: string; commit: string } | undefined;
    for (const cache of cacheDirs) {
      const commit = await revParse(localRepoPath({ ...repo, cacheDir: cache }), ref);
      if (commit) {
        found = { cache, commit };
        break;
      }
    }
    if (!found) {
      const tip = await publishedTip(repo, ref, cacheDirs);
      if (!tip) {
        if (o.onNotBuilt?.(img)) continue;
        throw notBuiltError(m.name);
      }
      info(`${m.name}: up to date with the published tree (${tip.version}, ${tip.commit.slice(0, 12)}); nothing to publish`);
      o.onUpToDate?.({ ...tip, name: m.name });
      continue;
    }
    const { commit } = found;
    const local = localRepoPath({ ...repo, cacheDir: found.cache });
    const version = (await commitMetadata(local, commit, 'version')) ?? '';
    const dir = path.join(outRoot({ ...repo, cacheDir: found.cache }, m.name), version);
    const manifest = readManifestJson(dir);
    if (!manifest || manifest.commit !== commit) throw new UserError(`${m.name} ${version}: its artifacts are missing from ${dir} (run: treecast build ${m.name})`);
    items.push({ manifest: m, ref, commit, version, fromRepo: local, emitted: { dir, manifest, artifacts: manifest.artifacts.map((a) => ({ ...a, path: path.join(dir, a.file) })), reused: true } });
  }
  return items;
}
