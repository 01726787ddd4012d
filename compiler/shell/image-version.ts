/**
 * Which commit `treecast shell` and `treecast unpack` open, and its checkout
 * in the layout a booted host sees. IMAGE is a manifest name (its newest
 * commit: the ref the manifest builds), name@version (out/ or the publish
 * dir's images/), an OSTree ref or a commit id. Without --from the local
 * build repository is asked first, then the configured publish dir's; with
 * --from DIR only DIR/repo and DIR/images.
 */
import path from 'node:path';
import { localRepoPath } from '../compile/build.js';
import { lstatIn, removeInRoot, renameIn } from '../compile/rootfs.js';
import { EXIT, UserError } from '../diagnostics.js';
import { run } from '../exec.js';
import { resolveSpec } from '../gitops/commit-diff.js';
import { hostPathExists } from '../compile/host-files.js';
import { defaultRef, loadImages } from '../images.js';
import type { ImageManifest } from '../manifest/types.js';
import type { Repo } from '../repo.js';

export interface ImageVersion {
  /** What the user asked for, for messages. */
  spec: string;
  /** The OSTree repository holding the commit. */
  repo: string;
  commit: string;
}

/** The manifest a spec names (`tiny`, not a ref or a commit id), if any. */
function manifestNamed(repo: Repo, name: string): ImageManifest | undefined {
  if (!/^[a-z0-9][a-z0-9._-]*$/.test(name)) return undefined;
  try {
    return loadImages(repo, [name]).selected[0]?.manifest;
  } catch (err) {
    // "no image named": a ref or a commit id. Invalid manifests are still reported.
    if (err instanceof UserError && err.exitCode === EXIT.usage) return undefined;
    throw err;
  }
}

export async function resolveImageVersion(repo: Repo, spec: string, from?: string): Promise<ImageVersion> {
  const publishDir = from ?? repo.publishDir;
  if (from !== undefined && !hostPathExists(path.join(from, 'repo', 'config'))) throw new UserError(`--from ${from}: not a publish dir (no OSTree repository at ${path.join(from, 'repo')})`);
  const repos = [...(from === undefined ? [localRepoPath(repo)] : []), path.join(publishDir, 'repo')].filter((r) => hostPathExists(path.join(r, 'config')));
  const versionDirs = (name: string, version: string) =>
    [...(from === undefined ? [path.join(repo.cacheDir, 'out', name, version)] : []), path.join(publishDir, 'images', name, version)].filter(hostPathExists);
  let candidate = spec;
  if (!spec.includes('@')) {
    const m = manifestNamed(repo, spec);
    if (m) candidate = defaultRef(repo, m);
  }
  const found = await resolveSpec(candidate, repos, versionDirs);
  if (!found) {
    const where = from === undefined ? 'the build cache or the publish dir' : from;
    throw new UserError(`"${spec}" is not a built or published version in ${where} (an image name, name@version, an OSTree ref or a commit id; build it first: treecast build ${spec.split('@')[0]})`);
  }
  return { spec, repo: found.repo, commit: found.commit };
}

/**
 * Check `v` out at `dest` (which must not exist) and show /usr/etc as /etc,
 * what `ostree admin deploy` gives a booted host and what emit's artifacts hold.
 * `hardlinks`: a bare repository's objects are linked, not copied: only for
 * a read-only lower layer (layer.ts); anything a person edits gets `copy`.
 */
export async function checkoutBooted(v: ImageVersion, dest: string, mode: 'hardlinks' | 'copy', signal?: AbortSignal): Promise<void> {
  // An archive repository (a publish dir) cannot hardlink: ostree copies from it either way.
  await run('ostree', ['checkout', `--repo=${v.repo}`, ...(mode === 'copy' ? ['--force-copy'] : []), v.commit, dest], { signal, progress: { label: `checkout ${v.commit.slice(0, 12)}` } });
  if (lstatIn(dest, '/usr/etc')?.isDirectory()) {
    removeInRoot(dest, '/etc');
    renameIn(dest, '/usr/etc', '/etc');
  }
}
