/** Build then publish a set of images: the job `ci` runs once and `watch` runs on every change. */
import path from 'node:path';
import { buildImages, type BuildOptions, type ImageBuildResult } from './build/build.js';
import { revParse } from './build/ostree.js';
import { defaultRef } from './images.js';
import type { ValidManifest } from './manifest/validate.js';
import { builtItems } from './publish/items.js';
import { publish, publishOptions, type PublishedImage, type PublishOptions } from './publish/publish.js';
import type { Repo } from './repo.js';

export interface JobResult {
  built: ImageBuildResult[];
  published: PublishedImage[];
}

export async function buildAndPublish(repo: Repo, all: ValidManifest[], selected: ValidManifest[], signal: AbortSignal, build: Pick<BuildOptions, 'lockTimeoutMs'> = {}, overrides: Partial<PublishOptions> = {}): Promise<JobResult> {
  if (!selected.length) return { built: [], published: [] };
  const built = await buildImages(repo, all, selected, { signal, ...build });
  const items = await builtItems(repo, selected);
  const published = await publish(items, publishOptions(repo, overrides));
  return { built, published };
}

/** Images whose ref is not in the publish repository yet (always part of a CI run). */
export async function unpublished(repo: Repo, images: ValidManifest[]): Promise<ValidManifest[]> {
  const pubRepo = path.join(repo.publishDir, 'repo');
  const out: ValidManifest[] = [];
  for (const img of images) if (!(await revParse(pubRepo, defaultRef(repo, img.manifest)))) out.push(img);
  return out;
}
