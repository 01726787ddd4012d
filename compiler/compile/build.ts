/**
 * The build orchestrator: a flat list of named steps per image, each timed
 * and each failure rethrown with the step and image it happened in.
 */
import { chmodSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { UserError, withContext } from '../diagnostics.js';
import { requirePrograms, run } from '../exec.js';
import { gitDescribe, gitHeadTime } from '../git.js';
import { defaultRef } from '../images.js';
import { info } from '../log.js';
import { progressScope } from '../progress.js';
import { withLock } from '../lock.js';
import type { ValidManifest } from '../manifest/validate.js';
import type { Repo } from '../repo.js';
import { commitTree } from '../steps/commit.js';
import type { BuildContext } from '../steps/step.js';
import { canonicalJson, computeInputHash, sha256 } from './input-hash.js';
import { commitMetadata, ensureRepoMode, refVersions, revParse } from './ostree.js';
import { previousImage, rememberPreviousImage } from './account-ids.js';
import { emitImage } from './emit.js';
import { buildOrder, defaultVersionPrefix, planSteps } from './plan.js';
import { commitComplete, localTip, openPublishedHistory, planHistory, type PublishedHistory } from './remote-history.js';

export interface StepTiming {
  name: string;
  seconds: number;
  detail?: string;
}

export interface ImageBuildResult {
  name: string;
  ref: string;
  commit: string;
  version: string;
  inputHash: string;
  cached: boolean;
  seconds: number;
  steps: StepTiming[];
  /** Artifacts written from the commit (build --json). */
  artifacts: { type: string; path: string; size: number; sha256: string }[];
  /** Directory holding the artifacts, MANIFEST.json and SHA256SUMS. */
  outDir?: string;
  /**
   * For a cached result: where its commit is. `published` means it is the
   * published tip and exists only in the published tree — nothing was emitted,
   * and there is nothing to publish.
   */
  upToDate?: 'local' | 'published';
  /** Parent of a new commit (a local commit, or the published tip it continues from). */
  parent?: string;
  /** The published tip of the ref seen before building (publish.url set, remote history on). */
  published?: { url: string; commit: string; version: string };
  /** base: {source: image}: the base commit this image was hashed against (and, when built, started from), and where it came from. */
  base?: { name: string; commit: string; from: 'built' | 'local' | 'published' };
}

export interface BuildOptions {
  /** Rebuild even when the input hash is already on the ref. */
  force?: boolean;
  signal?: AbortSignal;
  /**
   * Continue from the published tree at treecast.yaml publish.url (versions,
   * parents, unchanged inputs, base images): `true` reads it here, an object
   * is one already read (ci reads it first to know what is published).
   * Without publish.url in treecast.yaml the network is never touched.
   */
  remoteHistory?: boolean | PublishedHistory;
  /** Wait for another build using the same cache dir (default), or fail at once (--no-wait). */
  wait?: boolean;
  /** Give up waiting for that build after this long (watch: one stuck holder must not stall every round). */
  lockTimeoutMs?: number;
}

/**
 * One build per cache dir at a time (watch and ci, two CI jobs sharing a
 * cache): both would pick the same version and parent and race on the ref and
 * on out/<name>/<version>. flock semantics: a killed build releases it.
 */
export const buildLockPath = (repo: Repo) => path.join(repo.cacheDir, 'build.lock');

export const localRepoPath = (repo: Repo) => path.join(repo.cacheDir, 'repo');

/**
 * The build repository is `bare` (treecast runs as root): its objects are
 * files with their real owner, mode and setuid bits, so a plain `ostree
 * checkout` hardlinks them into an exact image root in well under a second
 * instead of copying every byte. A `bare-user` cache of an older treecast is
 * converted once (docs/layers.md).
 */
export const LOCAL_REPO_MODE = 'bare' as const;

/**
 * How image roots are populated. `hardlinks` (the default) is the layered path
 * of docs/layers.md; `copy` is the old full byte copy with a full commit, kept
 * ONLY so test/layered-commit.test.ts can prove both give the same commit
 * checksum (TREECAST_CHECKOUT=copy). Not a user setting.
 */
export function checkoutMode(): 'hardlinks' | 'copy' {
  return process.env.TREECAST_CHECKOUT === 'copy' ? 'copy' : 'hardlinks';
}

/** SOURCE_DATE_EPOCH: the environment, then treecast.yaml, then the git HEAD commit time, then now. */
export async function sourceDateEpoch(repo: Repo): Promise<number> {
  const env = process.env.SOURCE_DATE_EPOCH;
  if (env && /^\d+$/.test(env)) return Number(env);
  if (repo.config['source-date-epoch'] !== undefined) return repo.config['source-date-epoch'];
  return (await gitHeadTime(repo.root)) ?? Math.floor(Date.now() / 1000);
}

export async function buildImages(repo: Repo, all: ValidManifest[], selected: ValidManifest[], opts: BuildOptions = {}): Promise<ImageBuildResult[]> {
  mkdirSync(repo.cacheDir, { recursive: true });
  return withLock(buildLockPath(repo), `build lock of ${repo.cacheDir}`, () => buildImagesLocked(repo, all, selected, opts), { wait: opts.wait ?? true, timeoutMs: opts.lockTimeoutMs });
}

/** Names in <cache>/out/<name>/ that a killed build leaves: staging and moved-aside version dirs (gc lists them too). */
export const OUT_LEFTOVER = /^\.staging-|^\..*\.old-\d+-\d+$/;

/** A directory itself, not a symlink to one: cleanup must never be led outside the cache. */
export const isRealDir = (p: string) => lstatSync(p, { throwIfNoEntry: false })?.isDirectory() === true;

/**
 * What a killed build leaves: image roots and checkouts in <cache>/tmp,
 * staging and moved-aside version dirs in <cache>/out/<name>/. Only called
 * with the build lock held, so none of it belongs to a running build.
 */
export function removeBuildLeftovers(repo: Repo): string[] {
  const removed: string[] = [];
  const drop = (p: string) => {
    rmSync(p, { recursive: true, force: true });
    removed.push(p);
  };
  const tmp = path.join(repo.cacheDir, 'tmp');
  // A symlinked tmp/ or out/<name> (planted, or a stale layout) is never followed.
  for (const e of isRealDir(tmp) ? readdirSync(tmp) : []) drop(path.join(tmp, e));
  const out = path.join(repo.cacheDir, 'out');
  for (const name of isRealDir(out) ? readdirSync(out) : []) {
    const dir = path.join(out, name);
    if (!isRealDir(dir)) continue;
    for (const e of readdirSync(dir)) if (OUT_LEFTOVER.test(e)) drop(path.join(dir, e));
  }
  if (removed.length) info(`removed ${removed.length} leftovers of an interrupted build (${removed.map((p) => path.relative(repo.cacheDir, p)).join(', ')})`);
  return removed;
}

/**
 * A killed build can leave the overlay of a sandboxed step mounted under
 * <cache>/tmp (compiler/steps/layer.ts); removing the tree under a mount
 * would fail, so those go first. Deepest first: nothing is mounted on top.
 */
async function unmountLeftovers(repo: Repo): Promise<void> {
  // tmp: step overlays; out: the disk output's loop mount inside a staging dir (outputs/disk.ts).
  const under = ['tmp', 'out'].map((d) => path.join(repo.cacheDir, d) + '/');
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4]?.replace(/\\040/g, ' '))
    .filter((m): m is string => Boolean(m && under.some((u) => m.startsWith(u))))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) await run('umount', ['-l', m]);
}

async function buildImagesLocked(repo: Repo, all: ValidManifest[], selected: ValidManifest[], opts: BuildOptions): Promise<ImageBuildResult[]> {
  const signal = opts.signal ?? new AbortController().signal;
  const localRepo = localRepoPath(repo);
  mkdirSync(repo.cacheDir, { recursive: true });
  await unmountLeftovers(repo);
  removeBuildLeftovers(repo);
  await ensureRepoMode(localRepo, LOCAL_REPO_MODE);
  const epoch = await sourceDateEpoch(repo);
  const gitCommit = await gitDescribe(repo.root);
  const order = buildOrder(all, selected);
  const history =
    typeof opts.remoteHistory === 'object' ? opts.remoteHistory : opts.remoteHistory ? await openPublishedHistory(repo, localRepo, order.map((i) => defaultRef(repo, i.manifest)), signal) : undefined;
  const results: ImageBuildResult[] = [];
  const done = new Map<string, ImageBuildResult>();
  for (const image of order) {
    try {
      const built = await buildOne(repo, all, image, { localRepo, epoch, gitCommit, signal, force: Boolean(opts.force), history, done });
      done.set(built.name, built);
      if (built.upToDate === 'published') {
        // Its content is in the published tree only, and its artifacts were published with it: nothing to emit.
        results.push(built);
        continue;
      }
      const commitEpoch = Number((await commitMetadata(localRepo, built.commit, 'treecast.source-date-epoch')) ?? epoch);
      const emitted = await emitImage(repo, image.manifest, built, commitEpoch, signal);
      built.outDir = emitted.dir;
      built.artifacts = emitted.artifacts.map(({ type, path: p, size, sha256 }) => ({ type, path: p, size, sha256 }));
      results.push(built);
    } catch (err) {
      if (signal.aborted) throw new UserError(`building ${image.manifest.name}: interrupted; nothing was committed`);
      throw withContext(`building ${image.manifest.name}`, err);
    }
  }
  return results;
}

interface Shared {
  localRepo: string;
  epoch: number;
  gitCommit: string;
  signal: AbortSignal;
  force: boolean;
  history?: PublishedHistory;
  /** Results of this run so far: a derived image's base is always among them (buildOrder). */
  done: Map<string, ImageBuildResult>;
}

async function buildOne(repo: Repo, all: ValidManifest[], image: ValidManifest, s: Shared): Promise<ImageBuildResult> {
  const m = image.manifest;
  const started = performance.now();
  const ref = defaultRef(repo, m);
  const baseImage = m.base.source === 'image' ? all.find((i) => i.manifest.name === m.base.image) : undefined;
  const baseRef = baseImage ? defaultRef(repo, baseImage.manifest) : undefined;
  // The base's result in this run names its commit even when that commit is only in the published tree.
  const baseDone = baseImage ? s.done.get(baseImage.manifest.name) : undefined;
  const baseCommit = baseDone?.commit ?? (baseRef ? await revParse(s.localRepo, baseRef) : undefined);
  const base =
    baseImage && baseCommit
      ? { name: baseImage.manifest.name, commit: baseCommit, from: baseDone?.upToDate ?? (baseDone && !baseDone.cached ? ('built' as const) : ('local' as const)) }
      : undefined;
  const inputHash = computeInputHash(m, repo.root, baseCommit);
  const prefix = m['automatic-version-prefix'] ?? defaultVersionPrefix(s.epoch);
  const published = s.history?.tip(ref);
  const decision = planHistory({
    inputHash,
    force: s.force,
    prefix,
    local: await localTip(s.localRepo, ref),
    published,
    localVersions: await refVersions(s.localRepo, ref),
    publicDirVersions: await refVersions(path.join(repo.publishDir, 'repo'), ref),
  });
  const seen = published && s.history ? { url: s.history.url, commit: published.commit, version: published.version ?? '' } : undefined;
  const tipText = seen ? `published tip ${seen.version} (${seen.commit.slice(0, 12)}) at ${seen.url}` : undefined;
  if (decision.note) info(`${m.name}: ${decision.note}`);

  if (decision.action === 'cached') {
    if (decision.from === 'published') info(`${m.name}: up to date with the ${tipText}, inputs unchanged: nothing to build, emit or publish`);
    else info(`${m.name}: up to date (${decision.version}, ${decision.commit.slice(0, 12)}), inputs unchanged`);
    return { name: m.name, ref, commit: decision.commit, version: decision.version, inputHash, cached: true, seconds: 0, steps: [], artifacts: [], upToDate: decision.from, published: seen, base };
  }
  if (tipText) info(`${m.name}: ${tipText}; continuing at ${decision.version}${decision.parentFrom === 'local' ? ` on the newer local ${decision.parent!.slice(0, 12)}` : ''}`);

  // A base known only from the published tree: fetch that commit in full instead of rebuilding the base.
  if (base?.from === 'published' && s.history) {
    const t0 = performance.now();
    if (await s.history.ensureCommit(base.commit, s.signal)) info(`${m.name}: pulled base ${base.name} ${base.commit.slice(0, 12)} from ${s.history.url} in ${((performance.now() - t0) / 1000).toFixed(1)}s`);
  }

  const steps = planSteps(m);
  // getfattr/setfattr: the commit strips xattrs from the root first (steps/commit.ts stripXattrs).
  await requirePrograms(['ostree', 'getfattr', 'setfattr', ...steps.flatMap((st) => st.tools)]);

  const tmpRoot = path.join(repo.cacheDir, 'tmp');
  mkdirSync(tmpRoot, { recursive: true });
  const workDir = mkdtempSync(path.join(tmpRoot, `${m.name}-`));
  const ctx: BuildContext = {
    repo,
    image,
    manifest: m,
    ref,
    // The exact base commit (a checksum is a rev too): a published base has no local ref.
    baseRef: baseCommit ?? baseRef,
    root: path.join(workDir, 'root'),
    workDir,
    localRepo: s.localRepo,
    epoch: s.epoch,
    signal: s.signal,
    refreshBase: s.force,
    checkout: checkoutMode(),
    packages: [],
    version: decision.version,
  };
  mkdirSync(ctx.root);
  chmodSync(ctx.root, 0o755);
  // Account ids are compared with, and kept from, the commit this one continues (docs/accounts.md).
  // A parent known only from the published tree (a CI job's empty cache): its /usr/etc is fetched, a few hundred KiB.
  // An encrypted image's published parent is not in the published repo: with an empty cache its ids cannot be
  // compared (said so); the accounts of the image's manifest still pin their ids, and sysusers.d carries them.
  const parentHidden = Boolean(decision.parent && published?.encrypted && published.commit === decision.parent && !commitComplete(s.localRepo, decision.parent));
  if (parentHidden) info(`${m.name}: its published parent ${decision.parent!.slice(0, 12)} is encrypted and not in this cache: account ids are not compared with it`);
  const parentRepo = decision.parent && s.history && !parentHidden && !commitComplete(s.localRepo, decision.parent) ? await s.history.fetchEtc(decision.parent, s.signal) : s.localRepo;
  rememberPreviousImage(ctx, parentHidden ? undefined : await previousImage(parentRepo, decision.parent));
  const timings: StepTiming[] = [];
  info(`${m.name}: building ${ref}`);
  try {
    for (const step of steps) {
      s.signal.throwIfAborted();
      const t0 = performance.now();
      let detail: string | void;
      try {
        // Status lines of the programs the step runs read "edge-host: base (debian) 40 s: ...".
        detail = await progressScope(`${m.name}: ${step.name}`, () => step.run(ctx));
      } catch (err) {
        throw withContext(`step ${step.name}`, err);
      }
      const seconds = (performance.now() - t0) / 1000;
      timings.push({ name: step.name, seconds, detail: detail || undefined });
      info(`  ${step.name.padEnd(18)} ${seconds.toFixed(1).padStart(6)}s  ${detail ?? ''}`);
    }
    s.signal.throwIfAborted();
    const version = decision.version;
    const t0 = performance.now();
    // The parent may be a published commit absent from the build repo: ostree records its id without needing it.
    const commit = await progressScope(`${m.name}: commit`, () => commitTree(ctx, { version, parent: decision.parent, manifestSha256: sha256(canonicalJson(m)), inputHash, gitCommit: s.gitCommit }));
    const seconds = (performance.now() - t0) / 1000;
    timings.push({ name: 'commit', seconds });
    info(`  ${'commit'.padEnd(18)} ${seconds.toFixed(1).padStart(6)}s  ${ref} ${version} ${commit.slice(0, 12)}`);
    return { name: m.name, ref, commit, version, inputHash, cached: false, seconds: (performance.now() - started) / 1000, steps: timings, artifacts: [], parent: decision.parent, published: seen, base };
  } finally {
    rmSync(workDir, { recursive: true, force: true });
  }
}
