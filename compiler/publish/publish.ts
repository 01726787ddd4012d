/**
 * publish: built results -> the static HTTP tree, crash-safe.
 * Order (each step leaves a consistent tree if we die right after it):
 *   1. objects: `ostree pull-local` of the new commits (refs untouched), signatures, static deltas
 *   2. artifacts: copied into images/<name>/.staging-*, renamed to images/<name>/<version>
 *   3. images/<name>/latest, boot/<name>.ipxe, kickstart/<name>.ks (write + rename)
 *   4. refs, then the summary (signed), then index.json/index.html, then retention
 *      (old artifacts, `ostree prune`) and the summary once more
 * Order is publish order: each version dir gets a PUBLISHED.json (sequence,
 * time) when first published, and retention, `latest` and the catalog go by
 * it, never by build time (see sortVersions). Retention decides the kept
 * versions once (planRetention); their commits are held by hidden refs
 * (KEEP_COLLECTION) so `ostree prune --depth=0` removes exactly the others.
 * Only published commits become published history: pull-local copies the
 * commit alone, never local parents that were built but not published.
 * Release streams (./streams.ts) ride along: their targets are checked before
 * anything is written (a pin to an unpublished version changes nothing), their
 * deltas are made with the objects, their kickstart/iPXE files with the links,
 * their refs with the other refs, and retention keeps every version they point at.
 * A lock serializes publishers; leftovers of a killed publish are removed by the next one.
 */
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { EmitResult } from '../compile/emit.js';
import { readManifestJson, removeWhole, swapIntoPlace, type ImageManifestJson } from '../compile/emit.js';
import { ensureRepo, revParse } from '../compile/ostree.js';
import { run } from '../exec.js';
import { info, warn } from '../log.js';
import type { ImageManifest } from '../manifest/types.js';
import { disklessBoot, renderIpxe, type DisklessBoot } from '../outputs/diskless.js';
import { kernelFromManifest } from './kernel-files.js';
import { privateDirBeside, type Repo } from '../repo.js';
import { buildCatalog, planRetention, renderIndexHtml, sortVersions, type PublishedManifest, type PublishRecord } from './catalog.js';
import { exportPublicKey, signFile, type SigningKey } from './gpg.js';
import { renderKickstart } from './kickstart.js';
import { withPublishLock } from './lock.js';
import { hasCommit, publishedVersions, refCommit, repoStreams, streamTargetsIn, type ImageStreamDecl, type PublishedStream, type StreamImage, type StreamTarget } from './streams.js';
import { streamFiles } from '../manifest/streams.js';
import { UserError } from '../diagnostics.js';
import { replaceSymlinkDurable, writeFileDurable } from '../durable.js';
import { privateDirFor, publishNodes, type NodeBoot, type NodeSpec } from '../nodes/index.js';
import type { ValidManifest } from '../manifest/validate.js';
import { buildKeyPathOf, parseKeyFile, privateKeyPath, writeKeyFile } from '../compile/encrypt.js';

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
  /** The private tree beside `dir` (keys of encrypted images, node overlays): served to authenticated nodes only. */
  privateDir: string;
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
  /**
   * The diskless fleet (nodes.yaml): after the images, every node gets its boot
   * script and overlay for the latest published version of its image.
   */
  fleet?: { repo: Repo; images: ValidManifest[]; nodes: NodeSpec[] };
}

export interface PublishedImage {
  name: string;
  /** outputs.diskless.encrypt: artifacts and the key only; no commit, ref nor kickstart in the public tree. */
  encrypted?: boolean;
  ref: string;
  version: string;
  commit: string;
  previous?: string;
  delta?: string;
}

export const PUBLIC_KEY_FILE = 'keys/treecast.asc';
/** Next to a version's MANIFEST.json: when and in which order it was published (PublishRecord). */
export const PUBLISHED_FILE = 'PUBLISHED.json';
/**
 * Collection id of the refs that hold kept versions' commits
 * (repo/refs/mirrors/<id>/<image>/<version>). Mirror refs count for
 * `ostree prune --refs-only` but are not in the summary nor in `ostree refs`,
 * so hosts see only the image and stream refs.
 */
export const KEEP_COLLECTION = 'org.treecast.PublishedVersions';

export function publishOptions(repo: Repo, overrides: Partial<PublishOptions> = {}): PublishOptions {
  const c = repo.config;
  const key = c.signing?.['gpg-key'] ? { keyId: c.signing['gpg-key'], homedir: path.resolve(repo.root, c.signing['gpg-homedir'] ?? path.join(process.env.HOME ?? '/root', '.gnupg')) } : undefined;
  return {
    dir: repo.publishDir,
    privateDir: overrides.dir && !overrides.privateDir ? privateDirBeside(overrides.dir) : repo.privateDir,
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
  try {
    return await withPublishLock(o.dir, () => publishLocked(items, o, streamImages));
  } catch (err) {
    throw diskFull(err, items, o) ?? err;
  }
}

/**
 * A full disk under the publish dir, said plainly: ostree refuses before the
 * kernel does ("min-free-space-percent ... would be exceeded"), other writers
 * get ENOSPC. Nothing published was changed: the refs, summary and index move last.
 */
function diskFull(err: unknown, items: PublishItem[], o: PublishOptions): UserError | undefined {
  const text = err instanceof Error ? err.message : String(err);
  if (!/ENOSPC|no space left|min-free-space/i.test(text)) return undefined;
  const names = items.map((i) => i.manifest.name).join(', ') || 'release streams';
  return new UserError(`publishing ${names}: no space left on the disk of ${o.dir}; what was published before is unchanged (free space, then publish again)\n    ${text.trim().split('\n').slice(-3).join('\n    ')}`);
}

/** Every stream target of this publish, or a UserError listing every bad pin (before anything is written). */
function planStreams(items: PublishItem[], o: PublishOptions, streamImages: StreamImage[]): { target: StreamTarget; manifest: ImageManifest }[] {
  const out: { target: StreamTarget; manifest: ImageManifest }[] = [];
  const errors: string[] = [];
  const seen = new Set<string>();
  for (const x of [...items, ...streamImages]) {
    const name = x.manifest.name;
    const decl = o.streams?.[name];
    if (seen.has(name) || !decl || isEncrypted(x.manifest)) continue;
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
    if (isEncrypted(it.manifest)) {
      // Its commit stays in the build repository: the public repo would serve the plaintext tree.
      published.push({ name: it.manifest.name, ref: it.ref, version: it.version, commit: it.commit, encrypted: true });
      continue;
    }
    const previous = await revParse(repoDir, it.ref);
    if (previous === it.commit) {
      info(`${it.manifest.name}: ${it.version} is already published`);
      published.push({ name: it.manifest.name, ref: it.ref, version: it.version, commit: it.commit, previous });
      continue;
    }
    // The commit alone: its parent is the previous published commit (already here) or a local
    // build that was never published, which must not become published history. A missing
    // parent is normal for ostree (`ostree log`: "History beyond this commit not fetched").
    await run('ostree', ['pull-local', `--repo=${repoDir}`, '--depth=0', it.fromRepo, it.commit]);
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
    // The key first, in the private tree: a node never sees a version whose key is missing.
    if (isEncrypted(it.manifest)) publishKey(it, o);
    const staging = mkdtempSync(path.join(imageDir, `.staging-${it.version}-`));
    for (const f of readdirSync(it.emitted.dir)) copyFileSync(path.join(it.emitted.dir, f), path.join(staging, f));
    // In the staging dir, so the version appears with its place in the publish order or not at all.
    const record: PublishRecord = { sequence: nextSequence(imageDir), publishedAt: new Date().toISOString(), commit: it.commit };
    writeFileDurable(path.join(staging, PUBLISHED_FILE), JSON.stringify(record, null, 2) + '\n');
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
    if (!isEncrypted(m)) writeAtomic(
      path.join(o.dir, 'kickstart', `${m.name}.ks`),
      renderKickstart({ name: m.name, ref: it.ref, version: it.version, repoUrl: `${o.url}/repo`, remote: o.remote, signed: Boolean(o.key), keyUrl: o.key ? `${o.url}/${PUBLIC_KEY_FILE}` : undefined, kernelArgs: m['kernel-args'] ?? [] }),
    );
    if (m.outputs?.diskless) {
      const kernel = kernelFromManifest(it.emitted.manifest);
      writeAtomic(path.join(o.dir, 'boot', `${m.name}.ipxe`), renderIpxe(m.name, it.version, it.commit, disklessBoot(m, kernel, o.url, it.commit, it.version)));
    }
  }
  for (const { target: t, manifest: m } of streamPlan) writeStreamFiles(o, m, t);
  await writeFleet(o);
  crashPoint(o, 'links');

  // 4. refs, summary, catalog; only then retention, and the summary again.
  // Retention deletes the previous commit when keep is 1 (and the artifacts the
  // old index.json lists): done before the new summary, a crash in between
  // would leave a summary pointing at pruned objects.
  for (const p of published) if (!p.encrypted) await run('ostree', ['refs', `--repo=${repoDir}`, '--force', `--create=${p.ref}`, p.commit]);
  for (const s of streams) if (s.moved) await run('ostree', ['refs', `--repo=${repoDir}`, '--force', `--create=${s.ref}`, s.commit]);
  crashPoint(o, 'refs');
  await updateSummary(o, repoDir);
  crashPoint(o, 'summary');
  const plan = await retentionPlan(o, repoDir);
  writeCatalog(o, plan);
  await applyRetention(o, repoDir, plan);
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
  const boot = vm && publishedBoot(o, m, vm);
  if (boot) writeAtomic(path.join(o.dir, files.ipxe), renderIpxe(`${m.name} (${t.stream})`, t.version, t.commit, boot));
}

/**
 * The diskless boot of a published version, with the kernel arguments it was built with
 * (its MANIFEST.json): undefined when the image has no diskless output or the version no kernel.
 */
function publishedBoot(o: PublishOptions, m: ImageManifest, vm: ImageManifestJson): DisklessBoot | undefined {
  if (!m.outputs?.diskless || !vm.artifacts.some((a) => a.file === 'vmlinuz')) return undefined;
  return disklessBoot({ ...m, 'kernel-args': vm.kernelArgs }, kernelFromManifest(vm), o.url, vm.commit, vm.version);
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

/** One image's versions in publish order, and what retention does with them. */
export interface ImageRetention {
  name: string;
  /** Commits along the image refs' histories, tips first (orders versions published before PUBLISHED.json existed). */
  history: string[];
  kept: PublishedManifest[];
  removed: PublishedManifest[];
}

/**
 * The one retention decision for every image of the tree (not only those of
 * this publish: prune is repo-wide, so every image's kept commits need their
 * refs): the catalog lists `kept`, applyRetention removes `removed`.
 */
async function retentionPlan(o: PublishOptions, repoDir: string): Promise<ImageRetention[]> {
  const imagesDir = path.join(o.dir, 'images');
  const names = existsSync(imagesDir) ? readdirSync(imagesDir).filter((n) => !n.startsWith('.')).sort() : [];
  const out: ImageRetention[] = [];
  for (const name of names) {
    const versions = listVersions(path.join(imagesDir, name));
    // Only trees published before the order was recorded need the ref's history (one `ostree log` per ref).
    const history = versions.every((m) => m.published?.commit === m.commit) ? [] : await refHistories(repoDir, [...new Set(versions.map((m) => m.ref))]);
    // A version a stream points at stays, however old: hosts on that stream install and boot it.
    const pinned = new Set(streamVersions(o, name).map((s) => s.version));
    // An encrypted version's commit is never in repo/: its MANIFEST.json (and key) are what it is.
    const encrypted = new Set(versions.filter((m) => m.encrypted).map((m) => m.commit));
    const { kept, removed } = planRetention(sortVersions(versions, history), { keep: o.keep, pinned, hasCommit: (c) => encrypted.has(c) || hasCommit(repoDir, c) });
    out.push({ name, history, kept, removed });
  }
  return out;
}

/** Commit ids along each ref's history in the public repo, tips first. */
async function refHistories(repoDir: string, refs: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const ref of refs) {
    if (!refCommit(repoDir, ref)) continue;
    const r = await run('ostree', ['log', `--repo=${repoDir}`, ref], { allowFailure: true });
    out.push(...[...r.stdout.matchAll(/^commit ([0-9a-f]{64})$/gm)].map((m) => m[1]!));
  }
  return out;
}

/**
 * Remove what the plan removes: version dirs, then the commits. Each kept
 * version's commit gets a ref of KEEP_COLLECTION, so `prune --refs-only
 * --depth=0` keeps exactly the ref tips (images, streams) and the kept
 * versions, whatever the parent chains say: a kept version need not be an
 * ancestor of the tip (publish order is not build order), and an ancestor
 * that is not kept goes.
 */
async function applyRetention(o: PublishOptions, repoDir: string, plan: ImageRetention[]): Promise<void> {
  for (const img of plan) {
    for (const v of img.removed) {
      info(`${img.name}: retention removes ${v.version} (${v.commit.slice(0, 12)})`);
      removeWhole(path.join(o.dir, 'images', img.name, v.version));
      if (v.encrypted) rmSync(path.dirname(privateKeyPath(o.privateDir, img.name, v.version)), { recursive: true, force: true });
    }
  }
  // All at once, then the kept ones again: no prune runs in between (we hold the publish lock),
  // and a crash here only leaves refs the next publish rewrites before it prunes.
  await run('ostree', ['refs', `--repo=${repoDir}`, '--collections', '--delete', KEEP_COLLECTION]);
  for (const img of plan) {
    for (const v of img.kept.filter((k) => !k.encrypted)) await run('ostree', ['refs', `--repo=${repoDir}`, '--collections', '--force', `--create=${KEEP_COLLECTION}:${img.name}/${v.version}`, v.commit]);
  }
  await run('ostree', ['prune', `--repo=${repoDir}`, '--refs-only', '--depth=0']);
}

/** An image's published versions, each with its PUBLISHED.json when it has one (unordered). */
function listVersions(imageDir: string): PublishedManifest[] {
  return [...publishedVersionDirs(imageDir)].map(([dir, m]) => {
    const published = readPublishRecord(path.join(imageDir, dir));
    return published ? { ...m, published } : m;
  });
}

function publishedVersionDirs(imageDir: string): Map<string, ImageManifestJsonOf> {
  const out = new Map<string, ImageManifestJsonOf>();
  if (!existsSync(imageDir)) return out;
  // `<version>.old-<pid>-<ms>`: the previous copy swapIntoPlace moves aside (left behind by a crash).
  for (const d of readdirSync(imageDir)) {
    if (d.startsWith('.') || d === 'latest' || /\.old-\d+-\d+$/.test(d)) continue;
    const m = readManifestJson(path.join(imageDir, d));
    // As streams.ts publishedVersions: a dir is the version its MANIFEST.json names.
    if (m && m.version === d && typeof m.commit === 'string') out.set(d, m);
  }
  return out;
}

type ImageManifestJsonOf = NonNullable<ReturnType<typeof readManifestJson>>;

function readPublishRecord(versionDir: string): PublishRecord | undefined {
  try {
    const r = JSON.parse(readFileSync(path.join(versionDir, PUBLISHED_FILE), 'utf8')) as Partial<PublishRecord>;
    return typeof r.sequence === 'number' && typeof r.publishedAt === 'string' && typeof r.commit === 'string' ? (r as PublishRecord) : undefined;
  } catch {
    return undefined;
  }
}

/** The sequence of the next version published in imageDir: above every recorded one (versions without a record rank below all). */
function nextSequence(imageDir: string): number {
  let max = 0;
  for (const d of publishedVersionDirs(imageDir).keys()) max = Math.max(max, readPublishRecord(path.join(imageDir, d))?.sequence ?? 0);
  return max + 1;
}

/** index.json and index.html: exactly the versions the retention plan keeps, in publish order. */
export function writeCatalog(o: PublishOptions, plan: ImageRetention[]): void {
  const catalog = buildCatalog({
    url: o.url,
    remote: o.remote,
    signed: Boolean(o.key),
    publicKey: o.key ? `${o.url}/${PUBLIC_KEY_FILE}` : undefined,
    updated: new Date().toISOString(),
    images: plan.map((img) => ({
      name: img.name,
      hasIpxe: existsSync(path.join(o.dir, 'boot', `${img.name}.ipxe`)),
      versions: img.kept,
      history: img.history,
      streams: streamVersions(o, img.name).map((s) => ({ ...s, hasIpxe: existsSync(path.join(o.dir, streamFiles(img.name, s.name).ipxe)) })),
    })),
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

const isEncrypted = (m: ImageManifest) => m.outputs?.diskless?.encrypt === true;

/**
 * Each node's boot script (public) and overlay archive and token (private),
 * for the latest published version of its image: on every publish, so a
 * node added to nodes.yaml without any image change gets its files too.
 */
async function writeFleet(o: PublishOptions): Promise<void> {
  if (!o.fleet?.nodes.length) return;
  const boots = new Map<string, NodeBoot>();
  for (const name of new Set(o.fleet.nodes.map((n) => n.image))) {
    const m = o.fleet.images.find((i) => i.manifest.name === name)?.manifest;
    const vm = readManifestJson(path.join(o.dir, 'images', name, 'latest'));
    const b = m && vm && publishedBoot(o, m, vm);
    if (b) boots.set(name, b);
  }
  const nodes = await publishNodes({ repo: o.fleet.repo, nodes: o.fleet.nodes, publishDir: o.dir, privateDir: o.privateDir, publicUrl: o.url, boots });
  for (const n of nodes) info(`node ${n.name} (${n.mac}): ${n.bootScript}, image ${n.image}`);
}

/** Only the fleet's files (nodes.yaml changed, no image to publish), under the publish lock. */
export async function publishFleet(o: PublishOptions): Promise<void> {
  if (!o.fleet?.nodes.length) return;
  mkdirSync(o.dir, { recursive: true });
  await withPublishLock(o.dir, () => writeFleet(o));
}

/** The build's key of an encrypted version, copied durably into the private tree (0700 dirs, a 0600 file). */
function publishKey(it: PublishItem, o: PublishOptions): void {
  const from = buildKeyPathOf(it.emitted.dir);
  if (!existsSync(from)) throw new UserError(`${it.manifest.name} ${it.version}: the key of its encrypted root is missing from the build cache (${from}); build it again (treecast build ${it.manifest.name} --force)`);
  const to = privateKeyPath(o.privateDir, it.manifest.name, it.version);
  const text = readFileSync(from, 'utf8');
  parseKeyFile(text, from);
  // Every directory between the private dir and the key 0700, also those an older publish made.
  for (let d = path.dirname(to); d.startsWith(o.privateDir) && d !== o.privateDir; d = path.dirname(d)) privateDirFor(d);
  writeKeyFile(to, text);
}
