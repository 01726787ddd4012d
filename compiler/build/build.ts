/**
 * The build orchestrator: a flat list of named steps per image, each timed
 * and each failure rethrown with the step and image it happened in.
 */
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import path from 'node:path';
import { UserError, withContext } from '../diagnostics.js';
import { requirePrograms } from '../exec.js';
import { gitDescribe, gitHeadTime } from '../git.js';
import { defaultRef } from '../images.js';
import { info } from '../log.js';
import type { ValidManifest } from '../manifest/validate.js';
import type { Repo } from '../repo.js';
import { commitTree } from '../steps/commit.js';
import type { BuildContext } from '../steps/step.js';
import { canonicalJson, computeInputHash, sha256 } from './input-hash.js';
import { commitMetadata, ensureRepo, refVersions, revParse } from './ostree.js';
import { emitImage } from './emit.js';
import { buildOrder, defaultVersionPrefix, nextVersion, planSteps } from './plan.js';

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
}

export interface BuildOptions {
  /** Rebuild even when the input hash is already on the ref. */
  force?: boolean;
  signal?: AbortSignal;
}

export const localRepoPath = (repo: Repo) => path.join(repo.cacheDir, 'repo');

/** SOURCE_DATE_EPOCH: the environment, then treecast.yaml, then the git HEAD commit time, then now. */
export async function sourceDateEpoch(repo: Repo): Promise<number> {
  const env = process.env.SOURCE_DATE_EPOCH;
  if (env && /^\d+$/.test(env)) return Number(env);
  if (repo.config['source-date-epoch'] !== undefined) return repo.config['source-date-epoch'];
  return (await gitHeadTime(repo.root)) ?? Math.floor(Date.now() / 1000);
}

export async function buildImages(repo: Repo, all: ValidManifest[], selected: ValidManifest[], opts: BuildOptions = {}): Promise<ImageBuildResult[]> {
  const signal = opts.signal ?? new AbortController().signal;
  const localRepo = localRepoPath(repo);
  mkdirSync(repo.cacheDir, { recursive: true });
  await ensureRepo(localRepo, 'bare-user');
  const epoch = await sourceDateEpoch(repo);
  const gitCommit = await gitDescribe(repo.root);
  const results: ImageBuildResult[] = [];
  for (const image of buildOrder(all, selected)) {
    try {
      const built = await buildOne(repo, all, image, { localRepo, epoch, gitCommit, signal, force: Boolean(opts.force) });
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
}

async function buildOne(repo: Repo, all: ValidManifest[], image: ValidManifest, s: Shared): Promise<ImageBuildResult> {
  const m = image.manifest;
  const started = performance.now();
  const ref = defaultRef(repo, m);
  const baseImage = m.base.source === 'image' ? all.find((i) => i.manifest.name === m.base.image) : undefined;
  const baseRef = baseImage ? defaultRef(repo, baseImage.manifest) : undefined;
  const baseCommit = baseRef ? await revParse(s.localRepo, baseRef) : undefined;
  const inputHash = computeInputHash(m, repo.root, baseCommit);
  const existing = await revParse(s.localRepo, ref);

  if (existing && !s.force && (await commitMetadata(s.localRepo, existing, 'treecast.input-hash')) === inputHash) {
    const version = (await commitMetadata(s.localRepo, existing, 'version')) ?? '';
    info(`${m.name}: up to date (${version}, ${existing.slice(0, 12)}), inputs unchanged`);
    return { name: m.name, ref, commit: existing, version, inputHash, cached: true, seconds: 0, steps: [], artifacts: [] };
  }

  const steps = planSteps(m);
  await requirePrograms(['ostree', ...steps.flatMap((st) => st.tools)]);

  const tmpRoot = path.join(repo.cacheDir, 'tmp');
  mkdirSync(tmpRoot, { recursive: true });
  const workDir = mkdtempSync(path.join(tmpRoot, `${m.name}-`));
  const ctx: BuildContext = {
    repo,
    image,
    manifest: m,
    ref,
    baseRef,
    root: path.join(workDir, 'root'),
    workDir,
    localRepo: s.localRepo,
    epoch: s.epoch,
    signal: s.signal,
    refreshBase: s.force,
    packages: [],
  };
  mkdirSync(ctx.root);
  chmodSync(ctx.root, 0o755);
  const timings: StepTiming[] = [];
  info(`${m.name}: building ${ref}`);
  try {
    for (const step of steps) {
      s.signal.throwIfAborted();
      const t0 = performance.now();
      let detail: string | void;
      try {
        detail = await step.run(ctx);
      } catch (err) {
        throw withContext(`step ${step.name}`, err);
      }
      const seconds = (performance.now() - t0) / 1000;
      timings.push({ name: step.name, seconds, detail: detail || undefined });
      info(`  ${step.name.padEnd(18)} ${seconds.toFixed(1).padStart(6)}s  ${detail ?? ''}`);
    }
    s.signal.throwIfAborted();
    const prefix = m['automatic-version-prefix'] ?? defaultVersionPrefix(s.epoch);
    const published = path.join(repo.publishDir, 'repo');
    const version = nextVersion(prefix, [...(await refVersions(s.localRepo, ref)), ...(await refVersions(published, ref))]);
    const t0 = performance.now();
    const commit = await commitTree(ctx, { version, parent: existing, manifestSha256: sha256(canonicalJson(m)), inputHash, gitCommit: s.gitCommit });
    const seconds = (performance.now() - t0) / 1000;
    timings.push({ name: 'commit', seconds });
    info(`  ${'commit'.padEnd(18)} ${seconds.toFixed(1).padStart(6)}s  ${ref} ${version} ${commit.slice(0, 12)}`);
    return { name: m.name, ref, commit, version, inputHash, cached: false, seconds: (performance.now() - started) / 1000, steps: timings, artifacts: [] };
  } finally {
    rmSync(workDir, { recursive: true, force: true });
  }
}
