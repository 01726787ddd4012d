/**
 * publish: built results -> the static HTTP tree, crash-safe.
 * Order (each step leaves a consistent tree if we die right after it):
 *   1. objects: `ostree pull-local` of the new commits (refs untouched), signatures, static deltas
 *   2. artifacts: copied into images/<name>/.staging-*, renamed to images/<name>/<version>
 *   3. images/<name>/latest, boot/<name>.ipxe, kickstart/<name>.ks (write + rename)
 *   4. refs, then the summary (signed), then index.json/index.html, then retention
 *      (old artifacts, `ostree prune`) and the summary once more
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
import { findKernelInVersionDir } from './kernel-files.js';
import type { Repo } from '../repo.js';
import { buildCatalog, renderIndexHtml } from './catalog.js';
import { exportPublicKey, signFile, type SigningKey } from './gpg.js';
import { renderKickstart } from './kickstart.js';
import { withPublishLock } from './lock.js';
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
    ...overrides,
  };
}

export async function publish(items: PublishItem[], o: PublishOptions): Promise<PublishedImage[]> {
  mkdirSync(o.dir, { recursive: true });
  return withPublishLock(o.dir, () => publishLocked(items, o));
}

function crashPoint(o: PublishOptions, phase: string): void {
  if (o.crashAfter === phase) process.kill(process.pid, 'SIGKILL');
}

async function publishLocked(items: PublishItem[], o: PublishOptions): Promise<PublishedImage[]> {
  const repoDir = path.join(o.dir, 'repo');
  removeLeftovers(o.dir);
  await ensureRepo(repoDir, 'archive');
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
      const kernel = findKernelInVersionDir(path.join(o.dir, 'images', m.name, it.version), it.emitted.manifest);
      writeAtomic(path.join(o.dir, 'boot', `${m.name}.ipxe`), renderIpxe(m.name, it.version, it.commit, disklessBoot(m, kernel, o.url, it.commit, it.version)));
    }
  }
  crashPoint(o, 'links');

  // 4. refs, summary, catalog; only then retention, and the summary again.
  // Retention deletes the previous commit when keep is 1 (and the artifacts the
  // old index.json lists): done before the new summary, a crash in between
  // would leave a summary pointing at pruned objects.
  for (const p of published) await run('ostree', ['refs', `--repo=${repoDir}`, '--force', `--create=${p.ref}`, p.commit]);
  crashPoint(o, 'refs');
  await updateSummary(o, repoDir);
  crashPoint(o, 'summary');
  writeCatalog(o);
  await applyRetention(o, repoDir, items.map((i) => i.manifest.name));
  crashPoint(o, 'retention');
  // prune also deletes static deltas to pruned commits, which the summary lists.
  await updateSummary(o, repoDir);
  return published;
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
    for (const v of versions.slice(0, Math.max(0, versions.length - o.keep))) {
      if (v.version !== latest?.version) removeWhole(path.join(dir, v.version));
    }
  }
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
    // Only the versions retention keeps: the catalog never links to what is about to be removed.
    images: names.map((name) => ({ name, hasIpxe: existsSync(path.join(o.dir, 'boot', `${name}.ipxe`)), versions: listVersions(path.join(imagesDir, name)).slice(-Math.max(o.keep, 1)) })),
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
