/**
 * Publishing release streams (issue #11). A stream's ref points at a commit
 * that is already published: the one of its pinned version, or the image's
 * newest build. Nothing is built or re-committed, so the checksum hosts get is
 * the one published for that version (and its signature, made when it was
 * first published).
 *
 * The published MANIFEST.json files (images/<name>/<version>/MANIFEST.json,
 * field `commit`) are the map version -> commit: they are what the tree
 * serves, what retention keeps, and what index.json lists.
 *
 * `planStreamTargets` is the pure decision; the readers around it are
 * synchronous file reads of the publish dir.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { ImageManifestJson } from '../compile/emit.js';
import { readManifestJson } from '../compile/emit.js';
import { defaultRef, validateAll } from '../images.js';
import { compareVersions, isOwnRef, type ResolvedStream } from '../manifest/streams.js';
import type { ImageManifest } from '../manifest/types.js';
import { imageStreams, type ValidManifest } from '../manifest/validate.js';
import { listImageFiles, type Repo } from '../repo.js';

/** An image's ref (where every build goes) and its declared streams. */
export interface ImageStreamDecl {
  ref: string;
  streams: ResolvedStream[];
}

/** An image whose streams publish updates without a new build of it (a promotion). */
export interface StreamImage {
  manifest: ImageManifest;
  ref: string;
}

export interface StreamTarget {
  image: string;
  stream: string;
  ref: string;
  version: string;
  commit: string;
  /** True: follows every build; false: pinned to `version`. */
  follows: boolean;
  /** The commit the stream's ref points at now (undefined: not published yet). */
  previous?: string;
  /** The stream is the image's own ref under another name: publish writes nothing extra for its ref. */
  ownRef: boolean;
}

export interface PublishedStream extends StreamTarget {
  /** The ref moved (or was created) in this publish. */
  moved: boolean;
  /** Static delta previous -> commit, `<from12>-<to12>`, when one was generated. */
  delta?: string;
}

export interface StreamPlanInput {
  image: string;
  imageRef: string;
  streams: ResolvedStream[];
  /** Published versions (and those this publish adds): version -> commit. */
  versions: ReadonlyMap<string, string>;
  /** The image ref's commit once this publish is done, with its version; undefined when nothing is published. */
  tip?: { version: string; commit: string };
  /** What each stream ref points at now. */
  current: ReadonlyMap<string, string | undefined>;
}

/**
 * Pure: where each stream's ref must point. A pin to a version that is not
 * published is an error naming the stream, the version and the versions that
 * are; a stream that follows every build of an image with nothing published
 * yet has no target (it is created by the first publish).
 */
export function planStreamTargets(p: StreamPlanInput): { targets: StreamTarget[]; errors: string[] } {
  const targets: StreamTarget[] = [];
  const errors: string[] = [];
  for (const s of p.streams) {
    const base = { image: p.image, stream: s.name, ref: s.ref, previous: p.current.get(s.ref), ownRef: isOwnRef(s, p.imageRef) };
    if (s.version === undefined) {
      if (p.tip) targets.push({ ...base, version: p.tip.version, commit: p.tip.commit, follows: true });
      continue;
    }
    const commit = p.versions.get(s.version);
    if (!commit) {
      const known = [...p.versions.keys()].sort(compareVersions);
      errors.push(
        `stream "${s.name}" of ${p.image} pins version ${s.version}, which is not published` +
          (known.length ? ` (published versions of ${p.image}: ${known.join(', ')})` : ` (${p.image} has no published version yet)`),
      );
      continue;
    }
    targets.push({ ...base, version: s.version, commit, follows: false });
  }
  return { targets, errors };
}

/** Published versions of an image, from images/<name>/<version>/MANIFEST.json (retention's leftovers and dot dirs skipped). */
export function publishedVersions(publishDir: string, name: string): Map<string, ImageManifestJson> {
  const dir = path.join(publishDir, 'images', name);
  const out = new Map<string, ImageManifestJson>();
  if (!existsSync(dir)) return out;
  for (const d of readdirSync(dir)) {
    if (d.startsWith('.') || d === 'latest' || /\.old-\d+-\d+$/.test(d)) continue;
    const m = readManifestJson(path.join(dir, d));
    if (m && m.version === d && typeof m.commit === 'string') out.set(m.version, m);
  }
  return out;
}

/** The commit a ref of an archive repository points at (refs/heads/<ref>), read like an HTTP client reads it. */
export function refCommit(repoDir: string, ref: string): string | undefined {
  const f = path.join(repoDir, 'refs', 'heads', ref);
  if (!existsSync(f)) return undefined;
  const c = readFileSync(f, 'utf8').trim();
  return /^[0-9a-f]{64}$/.test(c) ? c : undefined;
}

/** Whether the commit object is in the repository (a published version whose commit was pruned cannot be pointed at). */
export function hasCommit(repoDir: string, commit: string): boolean {
  return existsSync(path.join(repoDir, 'objects', commit.slice(0, 2), `${commit.slice(2)}.commit`));
}

/**
 * The declared streams of every valid image of the repository, by image name.
 * Commands have validated the manifests already; an invalid one has no streams here.
 */
export function repoStreams(repo: Repo): Record<string, ImageStreamDecl> {
  const out: Record<string, ImageStreamDecl> = {};
  for (const img of validateAll(repo, listImageFiles(repo)).images) {
    const ref = defaultRef(repo, img.manifest);
    const streams = imageStreams(img, ref);
    if (streams.length) out[img.manifest.name] = { ref, streams };
  }
  return out;
}

/**
 * Targets for one image in the publish dir as it is now (plus `added`, the
 * version this publish adds). Used by publish, and by ci to find images whose
 * streams are not where the manifests say.
 */
export function streamTargetsIn(publishDir: string, image: string, decl: ImageStreamDecl, added?: { version: string; commit: string }): { targets: StreamTarget[]; errors: string[] } {
  const repoDir = path.join(publishDir, 'repo');
  const versions = new Map([...publishedVersions(publishDir, image)].map(([v, m]) => [v, m.commit]));
  if (added) versions.set(added.version, added.commit);
  let tip = added;
  if (!tip) {
    const commit = refCommit(repoDir, decl.ref);
    const version = commit ? [...versions].find(([, c]) => c === commit)?.[0] : undefined;
    if (commit && version) tip = { version, commit };
  }
  const current = new Map(decl.streams.map((s) => [s.ref, refCommit(repoDir, s.ref)]));
  const r = planStreamTargets({ image, imageRef: decl.ref, streams: decl.streams, versions, tip, current });
  // MANIFEST.json names the commit; it must also still be in repo/ (it is, unless someone pruned by hand).
  for (const t of r.targets) {
    if (t.commit !== added?.commit && !hasCommit(repoDir, t.commit)) {
      r.errors.push(`stream "${t.stream}" of ${image}: version ${t.version} is listed in images/${image}/${t.version}/MANIFEST.json, but its commit ${t.commit} is not in repo/`);
    }
  }
  r.targets = r.targets.filter((t) => t.commit === added?.commit || hasCommit(repoDir, t.commit));
  return r;
}

/** True when a stream ref of the image is missing or points elsewhere than its target, or a pin is invalid (publish reports it). */
export function streamsPending(publishDir: string, image: string, decl: ImageStreamDecl): boolean {
  const { targets, errors } = streamTargetsIn(publishDir, image, decl);
  return errors.length > 0 || targets.some((t) => !t.ownRef && t.previous !== t.commit);
}

/**
 * The images of `images` (other than those in `publishing`, whose streams ride
 * along with their new commit) whose streams are not where the manifests say:
 * publishWithStreams moves them without a build. Not only when this commit
 * changed a pin, so a failed run's promotion is done by the next one. Shared by
 * ci and publish, so both move the same streams.
 */
export function pendingStreamImages(repo: Repo, images: ValidManifest[], o: { dir: string; streams?: Record<string, ImageStreamDecl> }, publishing: ReadonlySet<string>): StreamImage[] {
  return images
    .filter((i) => !publishing.has(i.manifest.name) && o.streams?.[i.manifest.name] && streamsPending(o.dir, i.manifest.name, o.streams[i.manifest.name]!))
    .map((i) => ({ manifest: i.manifest, ref: defaultRef(repo, i.manifest) }));
}
