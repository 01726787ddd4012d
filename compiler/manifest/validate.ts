/**
 * Validation = load (YAML + includes) + JSON Schema + semantic rules.
 * Returns every problem as data; nothing is printed or thrown for bad input.
 */
import path from 'node:path';
import { didYouMean, type Diagnostic } from '../diagnostics.js';
import { displayPath, type RepoDirs } from '../paths.js';
import { repoDirsOf } from '../repo.js';
import { loadManifest, type LoadedManifest } from './load.js';
import { checkSchema, locate } from './schema.js';
import { checkSemantics } from './semantic.js';
import { checkStreams, mergeStreams, resolveStreams, type ResolvedStream, type StreamSpecs } from './streams.js';
import type { ImageManifest, RepoConfig } from './types.js';
import { plain } from './yaml.js';

export interface ValidManifest extends LoadedManifest {
  /**
   * The image as it is built: the merged manifest WITHOUT `streams`. Streams
   * are publish policy, kept apart here so that no build input (input hash,
   * treecast.manifest-sha256 in the commit, MANIFEST.json) can depend on a
   * pin: a promotion never rebuilds an image nor changes a checksum.
   */
  manifest: ImageManifest;
  /** Release streams: treecast.yaml `streams` defaults under the manifest's own (compiler/manifest/streams.ts). */
  streams: StreamSpecs;
  /** Stream names that come from treecast.yaml only (for error messages). */
  streamDefaults: Set<string>;
  /** The manifest file relative to the repository root. */
  shown: string;
}

/** The streams of an image with their refs, given its ref (`ref`, or the default the repository gives it). */
export function imageStreams(img: ValidManifest, imageRef: string): ResolvedStream[] {
  return resolveStreams(imageRef, img.streams, img.streamDefaults);
}

export type ValidateResult = { ok: true; image: ValidManifest } | { ok: false; file: string; diagnostics: Diagnostic[]; files: string[] };

/** `repo`: the Repo, or its root (then its treecast.yaml says which dirs the input policy guards). */
export function validateManifest(file: string, repo: string | RepoDirs): ValidateResult {
  const dirs = typeof repo === 'string' ? repoDirsOf(repo) : repo;
  const repoRoot = dirs.root;
  const abs = path.resolve(file);
  const loaded = loadManifest(abs, dirs);
  if (!loaded.ok) return { ok: false, file: abs, diagnostics: loaded.diagnostics, files: loaded.files };
  const { root } = loaded.manifest;
  const value = plain(root);
  const schemaDiags = checkSchema('image', root, value);
  if (schemaDiags.length) return { ok: false, file: abs, diagnostics: schemaDiags, files: loaded.manifest.files };
  const { streams: ownStreams, ...manifest } = value as ImageManifest;
  const semDiags = checkSemantics({ ...manifest, ...(ownStreams === undefined ? {} : { streams: ownStreams }) }, root, dirs);
  if (semDiags.length) return { ok: false, file: abs, diagnostics: semDiags, files: loaded.manifest.files };
  // repoDirsOf() opens the repository (a Repo, with its treecast.yaml) when it can; its defaults apply to every image.
  const defaults = (dirs as { config?: RepoConfig }).config?.streams;
  const { specs, fromDefaults } = mergeStreams(defaults, ownStreams);
  return { ok: true, image: { ...loaded.manifest, manifest, streams: specs, streamDefaults: fromDefaults, shown: displayPath(repoRoot, abs) } };
}

/** Rules across images: unique names and refs, base images that exist and do not form a cycle. */
export function checkAcrossImages(images: ValidManifest[], defaultRef: (m: ImageManifest) => string): Diagnostic[] {
  const out: Diagnostic[] = [];
  const byName = new Map<string, ValidManifest>();
  const byRef = new Map<string, ValidManifest>();
  for (const img of images) {
    const m = img.manifest;
    const other = byName.get(m.name);
    if (other) out.push({ loc: locOf(img, ['name']), path: 'name', message: `image name "${m.name}" is also used by ${other.shown}` });
    else byName.set(m.name, img);
    const ref = m.ref ?? defaultRef(m);
    const refOther = byRef.get(ref);
    if (refOther && refOther !== other) out.push({ loc: locOf(img, ['ref']), path: 'ref', message: `ref "${ref}" is also used by ${refOther.shown}` });
    else byRef.set(ref, img);
  }
  const byImage = new Map(images.map((img) => [img.manifest.name, img]));
  for (const p of checkStreams(images.map((img) => ({ name: img.manifest.name, ref: img.manifest.ref ?? defaultRef(img.manifest), streams: imageStreams(img, img.manifest.ref ?? defaultRef(img.manifest)) })))) {
    const img = byImage.get(p.image)!;
    // A default from treecast.yaml has no entry in the manifest: reported at its `streams` key, else at the manifest's top.
    out.push({ loc: locate(img.root, ['streams', p.stream], 'key'), path: `streams.${p.stream}`, message: p.message, hint: p.hint });
  }
  for (const img of images) {
    if (img.manifest.base.source !== 'image') continue;
    const seen = [img.manifest.name];
    let cur: ValidManifest | undefined = img;
    while (cur && cur.manifest.base.source === 'image') {
      const baseName: string = cur.manifest.base.image!;
      const next = byName.get(baseName);
      if (!next) {
        // "valid": the base may exist but have failed validation (its own errors are reported too).
        const others = [...byName.keys()].filter((n) => n !== cur!.manifest.name);
        const guess = didYouMean(baseName, others);
        const hint = guess ? `did you mean "${guess}"?` : others.length ? `valid images: ${others.join(', ')}` : 'base.image names another image manifest of this repository';
        out.push({ loc: locOf(cur, ['base', 'image']), path: 'base.image', message: `base image "${baseName}" is not a valid image of this repository`, hint });
        break;
      }
      if (seen.includes(baseName)) {
        out.push({ loc: locOf(img, ['base', 'image']), path: 'base.image', message: `base images form a cycle: ${[...seen, baseName].join(' -> ')}` });
        break;
      }
      seen.push(baseName);
      cur = next;
    }
  }
  return out;
}

function locOf(img: ValidManifest, segs: string[]) {
  return locate(img.root, segs, segs.length === 1 ? 'key' : 'value');
}
