/** What publish takes: each selected image's built commit and its emitted artifacts. */
import path from 'node:path';
import { localRepoPath } from '../build/build.js';
import { outRoot, readManifestJson } from '../build/emit.js';
import { commitMetadata, revParse } from '../build/ostree.js';
import { UserError } from '../diagnostics.js';
import { defaultRef } from '../images.js';
import type { ValidManifest } from '../manifest/validate.js';
import type { Repo } from '../repo.js';
import type { PublishItem } from './publish.js';

/**
 * `cacheDirs`: build caches to take results from — the repository's own by
 * default; in a CI matrix, one per build job (the publish job merges them).
 */
export async function builtItems(repo: Repo, images: ValidManifest[], cacheDirs: string[] = [repo.cacheDir]): Promise<PublishItem[]> {
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
    if (!found) throw new UserError(`${m.name} has not been built yet (run: treecast build ${m.name})`);
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
