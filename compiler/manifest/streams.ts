/**
 * Release streams (issue #11): the refs an image is published to besides its
 * own, each following every build or pinned to one published version. Pure:
 * which streams an image has (treecast.yaml defaults + its manifest), their
 * refs, and the rules that need no published tree (unique refs, a pin never on
 * the ref every build goes to, unique kickstart/iPXE file names). Whether a
 * pinned version is published is only known at publish time
 * (compiler/publish/streams.ts).
 */
import type { ImageManifest, RepoConfig, Stream } from './types.generated.js';

export type { Stream };

/** The streams as written: stream name -> {} or { version, ref }. */
export type StreamSpecs = Record<string, Stream>;

export interface ResolvedStream {
  name: string;
  ref: string;
  /** Pinned version; undefined: follows every build. */
  version?: string;
  /** Where the declaration comes from: the manifest (or its includes), or treecast.yaml's defaults. */
  from: 'manifest' | 'treecast.yaml';
}

/**
 * Defaults from treecast.yaml under the manifest's own streams: the manifest
 * wins per stream name (a default `testing: {}` can be pinned by one image).
 */
export function mergeStreams(defaults: RepoConfig['streams'] | undefined, own: ImageManifest['streams'] | undefined): { specs: StreamSpecs; fromDefaults: Set<string> } {
  const specs: StreamSpecs = {};
  const fromDefaults = new Set<string>();
  for (const [name, s] of Object.entries(defaults ?? {})) {
    if (!s) continue;
    specs[name] = { ...s };
    fromDefaults.add(name);
  }
  for (const [name, s] of Object.entries(own ?? {})) {
    if (!s) continue;
    specs[name] = { ...s };
    fromDefaults.delete(name);
  }
  return { specs, fromDefaults };
}

/**
 * A stream's default ref: the image's ref with its last part replaced by the
 * stream name, so `<name>/<arch>/stable` gives `<name>/<arch>/<stream>` and
 * `acme/edge/x86_64/stable` gives `acme/edge/x86_64/<stream>`. A one-part ref
 * gets the stream appended (replacing it would drop the image's name).
 */
export function defaultStreamRef(imageRef: string, stream: string): string {
  const i = imageRef.lastIndexOf('/');
  return i < 0 ? `${imageRef}/${stream}` : `${imageRef.slice(0, i)}/${stream}`;
}

/** Every stream with its ref, sorted by name. */
export function resolveStreams(imageRef: string, specs: StreamSpecs, fromDefaults: ReadonlySet<string> = new Set()): ResolvedStream[] {
  return Object.keys(specs)
    .sort()
    .map((name) => {
      const s = specs[name]!;
      return { name, ref: s.ref ?? defaultStreamRef(imageRef, name), version: s.version, from: fromDefaults.has(name) ? 'treecast.yaml' : 'manifest' };
    });
}

/**
 * A stream that follows every build on the image's own ref is that ref under
 * another name: nothing extra is written for it.
 */
export function isOwnRef(s: ResolvedStream, imageRef: string): boolean {
  return s.ref === imageRef;
}

/** Published file names of a stream (relative to the publish dir). */
export function streamFiles(image: string, stream: string): { kickstart: string; ipxe: string } {
  return { kickstart: `kickstart/${image}-${stream}.ks`, ipxe: `boot/${image}-${stream}.ipxe` };
}

export interface StreamProblem {
  image: string;
  /** The stream the problem is about (its entry in the manifest is where it is reported). */
  stream: string;
  message: string;
  hint?: string;
}

/**
 * Rules across every image of the repository that need no published tree:
 *  - a pinned stream on the image's own ref would fight every build for it;
 *  - each ref (image or stream) belongs to one image and stream;
 *  - kickstart/<name>-<stream>.ks must not be another image's or stream's file
 *    (image "edge" stream "host-testing" vs image "edge-host" stream "testing").
 */
export function checkStreams(images: { name: string; ref: string; streams: ResolvedStream[] }[]): StreamProblem[] {
  const out: StreamProblem[] = [];
  const refOwner = new Map<string, string>();
  const fileOwner = new Map<string, string>();
  for (const img of images) {
    refOwner.set(img.ref, `image ${img.name}`);
    fileOwner.set(`kickstart/${img.name}.ks`, `image ${img.name}`);
  }
  for (const img of images) {
    for (const s of img.streams) {
      const what = `stream "${s.name}" of ${img.name}`;
      const origin = s.from === 'treecast.yaml' ? ' (a default from treecast.yaml)' : '';
      if (isOwnRef(s, img.ref)) {
        if (s.version !== undefined) {
          out.push({
            image: img.name,
            stream: s.name,
            message: `${what} pins version ${s.version} on the image's own ref ${img.ref}, where every build is published`,
            hint: `give the image another ref for its builds (e.g. ref: ${defaultStreamRef(img.ref, 'testing')}), or set streams.${s.name}.ref`,
          });
        }
      } else {
        const owner = refOwner.get(s.ref);
        if (owner) out.push({ image: img.name, stream: s.name, message: `ref "${s.ref}" of ${what}${origin} is also the ref of ${owner}`, hint: 'every ref belongs to one image or stream: set streams.<name>.ref' });
        else refOwner.set(s.ref, what);
      }
      const ks = streamFiles(img.name, s.name).kickstart;
      const fileOwnerOf = fileOwner.get(ks);
      if (fileOwnerOf) out.push({ image: img.name, stream: s.name, message: `${what}${origin} would publish ${ks}, which is also the file of ${fileOwnerOf}`, hint: 'rename the stream' });
      else fileOwner.set(ks, what);
    }
  }
  return out;
}

/**
 * Versions in the order treecast numbers them (`<prefix>.<N>`): numeric parts
 * compare as numbers, so 1.10 is above 1.9.
 */
export function compareVersions(a: string, b: string): number {
  return a.localeCompare(b, undefined, { numeric: true });
}
