/**
 * publish: built results -> the static HTTP tree, crash-safe.
 * Order (each step leaves a consistent tree if we die right after it):
 *   1. objects: `ostree pull-local` of the new commits (refs untouched), signatures, static deltas
 *   2. artifacts: copied into images/<name>/.staging-*, renamed to images/<name>/<version>
 *   3. images/<name>/latest, boot/<name>.ipxe, kickstart/<name>.ks (write + rename)
 *   4. refs, then the summary (signed), then index.json/index.html, then retention
 *      (old artifacts, `ostree prune`) and the summary once more
 * Release streams (./streams.ts) ride along: their targets are checked before
 * anything is written (a pin to an unpublished version changes nothing), their
 * deltas are made with the objects, their kickstart/iPXE files with the links,
 * their refs with the other refs, and retention keeps every version they point at.
 * A lock serializes publishers; leftovers of a killed publish are removed by the next one.
 */
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { EmitResult } from '../build/emit.js';
import { readManifestJson, removeWhole, swapIntoPlace } from '../build/emit.js';
import { ensureRepo, revParse } from '../build/ostree.js';
import { run } from '../exec.js';
import { info, warn } from '../log.js';
import type { ImageManifest } from '../manifest/types.js';
import { disklessBoot, renderIpxe } from '../outputs/diskless.js';
import { kernelFromManifest } from './kernel-files.js';
import type { Repo } from '../repo.js';
import { buildCatalog, renderIndexHtml } from './catalog.js';
import { exportPublicKey, signFile, type SigningKey } from './gpg.js';
import { renderKickstart } from './kickstart.js';
import { withPublishLock } from './lock.js';
import { publishedVersions, refCommit, repoStreams, streamTargetsIn, type ImageStreamDecl, type PublishedStream, type StreamImage, type StreamTarget } from './streams.js';
import { streamFiles } from '../manifest/streams.js';
import { UserError } from '../diagnostics.js';
import { replaceSymlinkDurable, writeFileDurable } from '../durable.js';

export interface PublishItem {
  manifest: ImageManifest;
  ref: string;
  commit: string;
  version: string;
  emitted: EmitResult;
  /** The build repository holding the commit. */
  fromRepo: string;
}

export interface PublishOptions {
  dir: string;
  url: string;
  remote: string;
  key?: SigningKey;
  keep: number;
  staticDeltas: boolean;
  deltaFromEmpty: boolean;
  /**
   * Release streams by image name (from the manifests; publishOptions reads
   * them). Publish updates those of the images it publishes and of the
   * `streamImages` it is given; the catalog lists them for every image.
   */
  streams?: Record<string, ImageStreamDecl>;
  /** Test hook: stop (as if killed) right after the named phase. */
  crashAfter?: string;
}

export interface PublishedImage {
  name: string;
  ref: string;
  version: string;
  commit: string;
  previous?: string;
  delta?: string;
}

export const PUBLIC_KEY_FILE = 'keys/treecast.asc';

export function publishOptions(repo: Repo, overrides: Partial<PublishOptions> = {}): PublishOptions {
  const c = repo.config;
  const key = c.signing?.['gpg-key'] ? { keyId: c.signing['gpg-key'], homedir: path.resolve(repo.root, c.signing['gpg-homedir'] ?? path.join(process.env.HOME ?? '/root', '.gnupg')) } : undefined;
  return {
    dir: repo.publishDir,
    url: repo.publicUrl,
    remote: c.publish?.remote ?? 'treecast',
    key,
    keep: c.retention?.keep ?? 5,
    staticDeltas: c.publish?.['static-deltas'] ?? true,
    deltaFromEmpty: c.publish?.['delta-from-empty'] ?? false,
    streams: overrides.streams ?? repoStreams(repo),
    ...overrides,
  };
}

export async function publish(items: PublishItem[], o: PublishOptions): Promise<PublishedImage[]> {
  return (await publishWithStreams(items, o)).images;
}

/**
 * publish, plus `streamImages`: images with nothing new to publish whose
 * streams must move (a promotion or roll-back commit). Returns what moved.
 */
export async function publishWithStreams(items: PublishItem[], o: PublishOptions, streamImages: StreamImage[] = []): Promise<{ images: PublishedImage[]; streams: PublishedStream[] }> {
  mkdirSync(o.dir, { recursive: true });
  return withPublishLock(o.dir, () => publishLocked(items, o, streamImages));
}

/** Every stream target of this publish, or a UserError listing every bad pin (before anything is written). */
function planStreams(items: PublishItem[], o: PublishOptions, streamImages: StreamImage[]): { target: StreamTarget; manifest: ImageManifest }[] {
  const out: { target: StreamTarget; manifest: ImageManifest }[] = [];
  const errors: string[] = [];
  const seen = new Set<string>();
  for (const x of [...items, ...streamImages]) {
    const name = x.manifest.name;
    const decl = o.streams?.[name];
    if (seen.has(name) || !decl) continue;
    seen.add(name);
    const it = items.find((i) => i.manifest.name === name);
    const r = streamTargetsIn(o.dir, name, { ...decl, ref: x.ref }, it ? { version: it.version, commit: it.commit } : undefined);
    errors.push(...r.errors);
    out.push(...r.targets.map((target) => ({ target, manifest: x.manifest })));
  }
  if (errors.length) throw new UserError(`cannot publish the release streams:\n  ${errors.join('\n  ')}`);
  return out;
}

function crashPoint(o: PublishOptions, phase: string): void {
  if (o.crashAfter === phase) process.kill(process.pid, 'SIGKILL');
}

async function publishLocked(items: PublishItem[], o: PublishOptions, streamImages: StreamImage[]): Promise<{ images: PublishedImage[]; streams: PublishedStream[] }> {
  const repoDir = path.join(o.dir, 'repo');
  removeLeftovers(o.dir);
  await ensureRepo(repoDir, 'archive');
  const streamPlan = planStreams(items, o, streamImages);
  if (!o.key) warn(`publishing unsigned: hosts must add the remote with --no-gpg-verify (configure signing in treecast.yaml, or pass --gpg-key)`);

  // 1. objects
  const published: PublishedImage[] = [];
  for (const it of items) {
    const previous = await revParse(repoDir, it.ref);
    if (previous === it.commit) {
      info(`${it.manifest.name}: ${it.version} is already published`);
      published.push({ name: it.manifest.name, ref: it.ref, version: it.version, commit: it.commit, previous });
      continue;
    }
    await run('ostree', ['pull-local', `--repo=${repoDir}`, `--depth=${Math.max(o.keep - 1, 0)}`, it.fromRepo, it.commit]);
    if (o.key) await run('ostree', ['gpg-sign', `--repo=${repoDir}`, `--gpg-homedir=${o.key.homedir}`, it.commit, o.key.keyId]);
    let delta: string | undefined;
    if (o.staticDeltas && previous && previous !== it.commit) {
      await run('ostree', ['static-delta', 'generate', `--repo=${repoDir}`, `--from=${previous}`, `--to=${it.commit}`]);
      delta = `${previous.slice(0, 12)}-${it.commit.slice(0, 12)}`;
    }
    if (o.deltaFromEmpty) await run('ostree', ['static-delta', 'generate', `--repo=${repoDir}`, '--empty', `--to=${it.commit}`]);
    published.push({ name: it.manifest.name, ref: it.ref, version: it.version, commit: it.commit, previous, delta });
  }
  // Stream commits are already here and signed (signed when first published: re-signing
  // would fail, "already signed with key"); only the delta from the stream's previous commit is new.
  const streams: PublishedStream[] = [];
  for (const { target: t } of streamPlan) {
    const moved = !t.ownRef && t.previous !== t.commit;
    let delta: string | undefined;
    if (moved && o.staticDeltas && t.previous) {
      delta = `${t.previous.slice(0, 12)}-${t.commit.slice(0, 12)}`;
      const same = published.some((p) => p.delta === delta) || streams.some((s) => s.delta === delta);
      if (!same) await run('ostree', ['static-delta', 'generate', `--repo=${repoDir}`, `--from=${t.previous}`, `--to=${t.commit}`]);
    }
    streams.push({ ...t, moved, delta });
  }
  crashPoint(o, 'objects');

  // 2. artifacts
  for (const it of items) {
    const imageDir = path.join(o.dir, 'images', it.manifest.name);
    mkdirSync(imageDir, { recursive: true });
    const dest = path.join(imageDir, it.version);
    const current = readManifestJson(dest);
    if (current?.commit === it.commit) continue;
    const staging = mkdtempSync(path.join(imageDir, `.staging-${it.version}-`));
    for (const f of readdirSync(it.emitted.dir)) copyFileSync(path.join(it.emitted.dir, f), path.join(staging, f));
    if (o.key) await signFile(o.key, path.join(staging, 'SHA256SUMS'));
    chmodSync(staging, 0o755);
    crashPoint(o, 'artifact-staging');
    swapIntoPlace(staging, dest);
  }
  crashPoint(o, 'artifacts');

  // 3. latest links, boot scripts, kickstarts
  if (o.key) writeAtomic(path.join(o.dir, PUBLIC_KEY_FILE), await exportPublicKey(o.key));
  for (const it of items) {
    const m = it.manifest;
    replaceSymlink(path.join(o.dir, 'images', m.name, 'latest'), it.version);
    writeAtomic(
      path.join(o.dir, 'kickstart', `${m.name}.ks`),
      renderKickstart({ name: m.name, ref: it.ref, version: it.version, repoUrl: `${o.url}/repo`, remote: o.remote, signed: Boolean(o.key), keyUrl: o.key ? `${o.url}/${PUBLIC_KEY_FILE}` : undefined, kernelArgs: m['kernel-args'] ?? [] }),
    );
    if (m.outputs?.diskless) {
      const kernel = kernelFromManifest(it.emitted.manifest);
      writeAtomic(path.join(o.dir, 'boot', `${m.name}.ipxe`), renderIpxe(m.name, it.version, it.commit, disklessBoot(m, kernel, o.url, it.commit, it.version)));
    }
  }
  for (const { target: t, manifest: m } of streamPlan) writeStreamFiles(o, m, t);
  crashPoint(o, 'links');

  // 4. refs, summary, catalog; only then retention, and the summary again.
  // Retention deletes the previous commit when keep is 1 (and the artifacts the
  // old index.json lists): done before the new summary, a crash in between
  // would leave a summary pointing at pruned objects.
  for (const p of published) await run('ostree', ['refs', `--repo=${repoDir}`, '--force', `--create=${p.ref}`, p.commit]);
  for (const s of streams) if (s.moved) await run('ostree', ['refs', `--repo=${repoDir}`, '--force', `--create=${s.ref}`, s.commit]);
  crashPoint(o, 'refs');
  await updateSummary(o, repoDir);
  crashPoint(o, 'summary');
  writeCatalog(o);
  await applyRetention(o, repoDir, items.map((i) => i.manifest.name));
  crashPoint(o, 'retention');
  // prune also deletes static deltas to pruned commits, which the summary lists.
  await updateSummary(o, repoDir);
  return { images: published, streams };
}

/**
 * kickstart/<name>-<stream>.ks and, for diskless images, boot/<name>-<stream>.ipxe:
 * the version's own kernel arguments (MANIFEST.json), so a pinned older version
 * boots with what it was built with.
 */
function writeStreamFiles(o: PublishOptions, m: ImageManifest, t: StreamTarget): void {
  const files = streamFiles(m.name, t.stream);
  const versionDir = path.join(o.dir, 'images', m.name, t.version);
  const vm = readManifestJson(versionDir);
  const kernelArgs = vm?.kernelArgs ?? m['kernel-args'] ?? [];
  writeAtomic(
    path.join(o.dir, files.kickstart),
    renderKickstart({ name: m.name, stream: t.stream, ref: t.ref, version: t.version, repoUrl: `${o.url}/repo`, remote: o.remote, signed: Boolean(o.key), keyUrl: o.key ? `${o.url}/${PUBLIC_KEY_FILE}` : undefined, kernelArgs }),
  );
  if (m.outputs?.diskless && vm?.artifacts.some((a) => a.file === 'vmlinuz')) {
    const kernel = kernelFromManifest(vm);
    writeAtomic(path.join(o.dir, files.ipxe), renderIpxe(`${m.name} (${t.stream})`, t.version, t.commit, disklessBoot({ ...m, 'kernel-args': kernelArgs }, kernel, o.url, t.commit, t.version)));
  }
}

/** Versions the image's streams point at now (read from the refs): retention keeps them, the catalog lists them. */
function streamVersions(o: PublishOptions, name: string): { name: string; ref: string; version: string | null; commit: string; follows: boolean }[] {
  const decl = o.streams?.[name];
  if (!decl) return [];
  const byCommit = new Map([...publishedVersions(o.dir, name)].map(([v, m]) => [m.commit, v]));
  const out: { name: string; ref: string; version: string | null; commit: string; follows: boolean }[] = [];
  for (const s of decl.streams) {
    const commit = refCommit(path.join(o.dir, 'repo'), s.ref);
    if (commit) out.push({ name: s.name, ref: s.ref, version: byCommit.get(commit) ?? null, commit, follows: s.version === undefined });
  }
  return out;
}

async function updateSummary(o: PublishOptions, repoDir: string): Promise<void> {
  const summaryArgs = ['summary', `--repo=${repoDir}`, '--update'];
  if (o.key) summaryArgs.push(`--gpg-sign=${o.key.keyId}`, `--gpg-homedir=${o.key.homedir}`);
  await run('ostree', summaryArgs);
}

/** Keep the newest `keep` versions of each image: artifacts and commits (via prune depth). */
async function applyRetention(o: PublishOptions, repoDir: string, names: string[]): Promise<void> {
  for (const name of names) {
    const dir = path.join(o.dir, 'images', name);
    const versions = listVersions(dir);
    const latest = versions[versions.length - 1];
    // A version a stream points at stays, however old: hosts on that stream install and boot it.
    const pinned = new Set(streamVersions(o, name).map((s) => s.version));
    for (const v of versions.slice(0, Math.max(0, versions.length - o.keep))) {
      if (v.version !== latest?.version && !pinned.has(v.version)) removeWhole(path.join(dir, v.version));
    }
  }
  // Its commit stays too: --refs-only keeps what every ref points at (stream refs included) and --depth of its history.
  await run('ostree', ['prune', `--repo=${repoDir}`, '--refs-only', `--depth=${Math.max(o.keep - 1, 0)}`]);
}

function listVersions(imageDir: string) {
  if (!existsSync(imageDir)) return [];
  const ms = readdirSync(imageDir)
    // `<version>.old-<pid>-<ms>`: the previous copy swapIntoPlace moves aside (left behind by a crash).
    .filter((d) => !d.startsWith('.') && d !== 'latest' && !/\.old-\d+-\d+$/.test(d))
    .map((d) => readManifestJson(path.join(imageDir, d)))
    .filter((m): m is NonNullable<typeof m> => Boolean(m));
  return ms.sort((a, b) => a.buildTime.localeCompare(b.buildTime) || a.version.localeCompare(b.version, undefined, { numeric: true }));
}

export function writeCatalog(o: PublishOptions): void {
  const imagesDir = path.join(o.dir, 'images');
  const names = existsSync(imagesDir) ? readdirSync(imagesDir).filter((n) => !n.startsWith('.')) : [];
  const catalog = buildCatalog({
    url: o.url,
    remote: o.remote,
    signed: Boolean(o.key),
    publicKey: o.key ? `${o.url}/${PUBLIC_KEY_FILE}` : undefined,
    updated: new Date().toISOString(),
    // Only the versions retention keeps (the newest `keep`, and every version a stream points at):
    // the catalog never links to what is about to be removed.
    images: names.map((name) => {
      const all = listVersions(path.join(imagesDir, name));
      const streams = streamVersions(o, name);
      const pinned = new Set(streams.map((s) => s.version));
      const newest = new Set(all.slice(-Math.max(o.keep, 1)).map((m) => m.version));
      return {
        name,
        hasIpxe: existsSync(path.join(o.dir, 'boot', `${name}.ipxe`)),
        versions: all.filter((m) => newest.has(m.version) || pinned.has(m.version)),
        streams: streams.map((s) => ({ ...s, hasIpxe: existsSync(path.join(o.dir, streamFiles(name, s.name).ipxe)) })),
      };
    }),
  });
  writeAtomic(path.join(o.dir, 'index.json'), JSON.stringify(catalog, null, 2) + '\n');
  writeAtomic(path.join(o.dir, 'index.html'), renderIndexHtml(catalog));
}

/** Write a file so readers see the old or the new content, never a part (and never an empty file after a power loss). */
export function writeAtomic(file: string, content: string): void {
  writeFileDurable(file, content);
}

function replaceSymlink(link: string, target: string): void {
  replaceSymlinkDurable(link, target);
}

/** Staging dirs and temp files of a publish that was killed. */
function removeLeftovers(dir: string): void {
  const visit = (d: string, depth: number) => {
    if (!existsSync(d)) return;
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (/^\.(staging-|.*\.tmp-\d+$)/.test(e.name) || /\.old-\d+-\d+$/.test(e.name)) rmSync(p, { recursive: true, force: true });
      else if (e.isDirectory() && depth > 0 && e.name !== 'repo') visit(p, depth - 1);
    }
  };
  visit(dir, 2);
}
