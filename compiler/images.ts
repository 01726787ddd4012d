/** Loading and validating the images of a repository, as one step the other verbs share. */
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Diagnostic } from './diagnostics.js';
import { UserError } from './diagnostics.js';
import type { ImageManifest } from './manifest/types.js';
import { checkAcrossImages, validateManifest, type ValidManifest } from './manifest/validate.js';
import { displayPath } from './paths.js';
import { listImageFiles, type Repo } from './repo.js';

export function defaultRef(repo: Repo, m: ImageManifest): string {
  return m.ref ?? `${m.name}/${repo.arch}/stable`;
}

export interface ValidateAllResult {
  images: ValidManifest[];
  diagnostics: Diagnostic[];
}

export function validateAll(repo: Repo, files: string[]): ValidateAllResult {
  const images: ValidManifest[] = [];
  const diagnostics: Diagnostic[] = [];
  for (const f of files) {
    const abs = path.resolve(f);
    if (!existsSync(abs)) {
      diagnostics.push({ message: `${displayPath(repo.root, abs)}: no such manifest file` });
      continue;
    }
    const r = validateManifest(abs, repo.root);
    if (r.ok) images.push(r.image);
    else diagnostics.push(...r.diagnostics);
  }
  // Images given by path may derive from images not named on the command line:
  // the rest of the repository is read (quietly) so base images resolve.
  const context = [...images];
  const missingBase = images.some((i) => i.manifest.base.source === 'image' && !images.some((j) => j.manifest.name === i.manifest.base.image));
  if (missingBase) {
    for (const f of listImageFiles(repo)) {
      if (images.some((i) => i.file === f)) continue;
      const r = validateManifest(f, repo.root);
      if (r.ok) context.push(r.image);
    }
  }
  const across = checkAcrossImages(context, (m) => defaultRef(repo, m));
  // Only problems located in the manifests asked about are reported.
  const shown = new Set(images.map((i) => i.shown));
  diagnostics.push(...across.filter((d) => !d.loc || shown.has(d.loc.via?.[d.loc.via.length - 1]?.file ?? d.loc.file)));
  return { images, diagnostics };
}

/**
 * Every image of the repository, valid, or a UserError listing all problems.
 * `names` picks images by name or manifest path; base images they derive from come along.
 */
export function loadImages(repo: Repo, names: string[] = []): { all: ValidManifest[]; selected: ValidManifest[] } {
  const result = validateAll(repo, listImageFiles(repo));
  const extra = names.filter((n) => /\.ya?ml$/.test(n) && existsSync(n)).map((n) => path.resolve(n));
  for (const f of extra) {
    if (result.images.some((i) => i.file === f)) continue;
    const r = validateManifest(f, repo.root);
    if (r.ok) result.images.push(r.image);
    else result.diagnostics.push(...r.diagnostics);
  }
  if (result.diagnostics.length) throw new UserError('invalid image manifests', result.diagnostics);
  if (names.length === 0) return { all: result.images, selected: result.images };
  const selected: ValidManifest[] = [];
  for (const n of names) {
    const abs = path.resolve(n);
    const img = result.images.find((i) => i.manifest.name === n || i.file === abs);
    if (!img) throw new UserError(`no image named "${n}" (images: ${result.images.map((i) => i.manifest.name).join(', ')})`, [], 2);
    selected.push(img);
  }
  return { all: result.images, selected };
}
