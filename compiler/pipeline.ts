/**
 * Build then publish a set of images: the one sequence `ci` runs once and
 * `watch` runs on every round. Images up to date with their published tip
 * exist only in the published tree: nothing to publish for them. Release
 * streams of the other images move when their refs are not where the
 * manifests say (a promotion or roll-back commit; also a failed run's).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { buildImages, localRepoPath, type BuildOptions, type ImageBuildResult } from './compile/build.js';
import { revParse } from './compile/ostree.js';
import { openPublishedHistory, type PublishedHistory } from './compile/remote-history.js';
import { defaultRef } from './images.js';
import type { ValidManifest } from './manifest/validate.js';
import { builtItems } from './publish/items.js';
import { publishFleet, publishOptions, publishWithStreams, type PublishedImage, type PublishOptions } from './publish/publish.js';
import { loadNodes } from './nodes/index.js';
import { pendingStreamImages, type PublishedStream } from './publish/streams.js';
import type { Repo } from './repo.js';

export interface JobResult {
  built: ImageBuildResult[];
  published: PublishedImage[];
  streams: PublishedStream[];
}

export interface JobOptions extends Pick<BuildOptions, 'lockTimeoutMs'> {
  signal: AbortSignal;
  /** The published tree read by the caller (ci reads it first), or `true` to read it here, `false` never. */
  remoteHistory: boolean | PublishedHistory | undefined;
  publish?: Partial<PublishOptions>;
}

export async function buildAndPublish(repo: Repo, all: ValidManifest[], selected: ValidManifest[], o: JobOptions): Promise<JobResult> {
  const result: JobResult = { built: [], published: [], streams: [] };
  let toPublish: ValidManifest[] = [];
  if (selected.length) {
    const history = o.remoteHistory === true ? await openPublishedHistory(repo, localRepoPath(repo), all.map((i) => defaultRef(repo, i.manifest)), o.signal) : o.remoteHistory || undefined;
    result.built = await buildImages(repo, all, selected, { signal: o.signal, remoteHistory: history ?? false, lockTimeoutMs: o.lockTimeoutMs });
    const upToDate = new Set(result.built.filter((b) => b.upToDate === 'published').map((b) => b.name));
    toPublish = selected.filter((i) => !upToDate.has(i.manifest.name));
  }
  const opts = publishOptions(repo, { ...o.publish, fleet: { repo, images: all, nodes: loadNodes(repo, all) } });
  const streamOnly = pendingStreamImages(repo, all, opts, new Set(toPublish.map((i) => i.manifest.name)));
  if (toPublish.length || streamOnly.length) {
    const r = await publishWithStreams(toPublish.length ? await builtItems(repo, toPublish) : [], opts, streamOnly);
    result.published = r.images;
    result.streams = r.streams;
  } else {
    // Nothing new to publish; a node added to nodes.yaml still gets its files.
    await publishFleet(opts);
  }
  return result;
}

/** Images whose ref is not in the publish repository yet (always part of a CI run). */
export async function unpublished(repo: Repo, images: ValidManifest[]): Promise<ValidManifest[]> {
  const pubRepo = path.join(repo.publishDir, 'repo');
  const out: ValidManifest[] = [];
  for (const img of images) {
    // An encrypted image has no ref there: its latest version dir is what was published.
    const published = img.manifest.outputs?.diskless?.encrypt ? existsSync(path.join(repo.publishDir, 'images', img.manifest.name, 'latest', 'MANIFEST.json')) : await revParse(pubRepo, defaultRef(repo, img.manifest));
    if (!published) out.push(img);
  }
  return out;
}
