/**
 * `treecast gc`, the doing half: gather facts, plan (./plan.ts), then either
 * report what would go (--dry-run: nothing is written, not even the lock's
 * holder line) or, holding the build lock, remove it and measure what was freed.
 */
import { existsSync, rmSync } from 'node:fs';
import path from 'node:path';
import { buildLockPath, localRepoPath, removeBuildLeftovers } from '../compile/build.js';
import { removeWhole } from '../compile/emit.js';
import { requirePrograms, run } from '../exec.js';
import { info, warn } from '../log.js';
import { withLock } from '../lock.js';
import type { ValidManifest } from '../manifest/validate.js';
import type { Repo } from '../repo.js';
import { gatherFacts } from './facts.js';
import { checkCacheLayout, checkRemovable } from './guard.js';
import { diskUsage, freedBy, objectFiles, reachableObjects, unreachable } from './measure.js';
import { CATEGORIES, planGc, type GcCategory, type GcItem, type GcPlan } from './plan.js';

export interface GcOptions {
  keep: number;
  dryRun: boolean;
  /** Wait for a build holding the cache (default), or fail at once (--no-wait). */
  wait?: boolean;
}

export interface GcReport {
  dryRun: boolean;
  cacheDir: string;
  keep: number;
  items: GcItem[];
  /** Bytes freed (or, with dryRun, that would be freed) per category. */
  categories: Record<GcCategory, { items: number; bytes: number }>;
  totalBytes: number;
  /** Object files of the build repository before, and after the prune (predicted with dryRun). */
  objects: { before: number; after: number };
  /** du of the whole cache dir before, and after (predicted with dryRun). */
  cacheBytes: { before: number; after: number };
}

export async function runGc(repo: Repo, images: ValidManifest[], o: GcOptions): Promise<GcReport> {
  if (!existsSync(repo.cacheDir)) {
    info(`no cache dir at ${repo.cacheDir}: nothing to collect`);
    return emptyReport(repo, o);
  }
  await requirePrograms(['ostree']);
  if (o.dryRun) return dryRun(repo, images, o);
  return withLock(buildLockPath(repo), `build lock of ${repo.cacheDir}`, () => collect(repo, images, o), { wait: o.wait ?? true });
}

function emptyReport(repo: Repo, o: GcOptions): GcReport {
  const categories = Object.fromEntries(CATEGORIES.map((c) => [c, { items: 0, bytes: 0 }])) as GcReport['categories'];
  return { dryRun: o.dryRun, cacheDir: repo.cacheDir, keep: o.keep, items: [], categories, totalBytes: 0, objects: { before: 0, after: 0 }, cacheBytes: { before: 0, after: 0 } };
}

async function planFor(repo: Repo, images: ValidManifest[], keep: number): Promise<GcPlan> {
  checkCacheLayout(repo);
  const plan = planGc(await gatherFacts(repo, images, keep));
  checkRemovable(repo, [...plan.leftovers, ...plan.outDirs, ...plan.aptDirs]);
  return plan;
}

const abs = (repo: Repo, rels: string[]) => rels.map((r) => path.join(repo.cacheDir, r));

function report(repo: Repo, o: GcOptions, plan: GcPlan, bytes: Record<GcCategory, number>, objects: GcReport['objects'], cacheBytes: GcReport['cacheBytes']): GcReport {
  const categories = Object.fromEntries(CATEGORIES.map((c) => [c, { items: plan.items.filter((i) => i.category === c).length, bytes: bytes[c] }])) as GcReport['categories'];
  return { dryRun: o.dryRun, cacheDir: repo.cacheDir, keep: o.keep, items: plan.items, categories, totalBytes: CATEGORIES.reduce((n, c) => n + bytes[c], 0), objects, cacheBytes };
}

async function dryRun(repo: Repo, images: ValidManifest[], o: GcOptions): Promise<GcReport> {
  const plan = await planFor(repo, images, o.keep);
  const local = localRepoPath(repo);
  const objects = objectFiles(local);
  // What the prune would delete: every object the kept commits do not reach (ostree prune --no-prune cannot tell, as the refs are still there).
  const gone = objects.length ? unreachable(objects, await reachableObjects(local, plan.keptCommits)) : [];
  const leftovers = freedBy(abs(repo, plan.leftovers));
  const bytes: Record<GcCategory, number> = {
    leftovers,
    out: freedBy(abs(repo, plan.outDirs)),
    // A leftover checkout may hardlink objects the prune deletes: those bytes come free with the
    // prune (the real run removes leftovers first), so they count here, as the real run measures them.
    repo: freedBy([...gone.map((g) => g.path), ...abs(repo, plan.leftovers)]) - leftovers,
    'apt-archives': freedBy(abs(repo, plan.aptDirs)),
  };
  const before = diskUsage([repo.cacheDir]);
  const total = CATEGORIES.reduce((n, c) => n + bytes[c], 0);
  return report(repo, o, plan, bytes, { before: objects.length, after: objects.length - gone.length }, { before, after: before - total });
}

async function collect(repo: Repo, images: ValidManifest[], o: GcOptions): Promise<GcReport> {
  const plan = await planFor(repo, images, o.keep);
  const local = localRepoPath(repo);
  const cacheBefore = diskUsage([repo.cacheDir]);
  const objectsBefore = objectFiles(local);
  const repoBefore = diskUsage([path.join(local, 'objects')]);
  const before = { leftovers: freedBy(abs(repo, plan.leftovers)), out: freedBy(abs(repo, plan.outDirs)), apt: freedBy(abs(repo, plan.aptDirs)) };

  const removed = removeBuildLeftovers(repo).map((p) => path.relative(repo.cacheDir, p));
  const unplanned = removed.filter((r) => !plan.leftovers.includes(r));
  if (unplanned.length) warn(`removed leftovers that appeared after gc looked: ${unplanned.join(', ')}`);
  // What removeBuildLeftovers does not know: a killed repository conversion's side directories.
  for (const r of plan.leftovers) if (!removed.includes(r)) rmSync(path.join(repo.cacheDir, r), { recursive: true, force: true });
  for (const d of abs(repo, plan.outDirs)) removeWhole(d);
  // An encrypted version's key is kept beside out/ (compile/encrypt.ts buildKeyPath): it goes with its version.
  for (const rel of plan.outDirs) rmSync(path.join(repo.cacheDir, 'private', 'keys', path.relative('out', rel)), { recursive: true, force: true });
  if (plan.deleteRefs.length) await run('ostree', ['refs', `--repo=${local}`, '--delete', ...plan.deleteRefs]);
  if (objectsBefore.length) await prune(local, plan);
  for (const d of abs(repo, plan.aptDirs)) rmSync(d, { recursive: true, force: true });

  const after = (rels: string[]) => diskUsage(abs(repo, rels));
  const bytes: Record<GcCategory, number> = {
    leftovers: before.leftovers - after(plan.leftovers),
    out: before.out - after(plan.outDirs),
    repo: repoBefore - diskUsage([path.join(local, 'objects')]),
    'apt-archives': before.apt - after(plan.aptDirs),
  };
  return report(repo, o, plan, bytes, { before: objectsBefore.length, after: objectFiles(local).length }, { before: cacheBefore, after: diskUsage([repo.cacheDir]) });
}

/**
 * One `ostree prune --refs-only` per history depth, each limited to its refs
 * (--only-branch): the other refs count as reachable in full meanwhile, so
 * the passes add up to "each ref keeps its own depth". Objects of deleted refs
 * and commits on no ref go in the first pass.
 */
async function prune(local: string, plan: GcPlan): Promise<void> {
  // No local ref left: one plain pass (depth -1 keeps the whole history of remote refs, as the plan does).
  const passes = plan.prune.length ? plan.prune : [{ depth: -1, refs: [] as string[] }];
  for (const p of passes) {
    const r = await run('ostree', ['prune', `--repo=${local}`, '--refs-only', `--depth=${p.depth}`, ...p.refs.map((ref) => `--only-branch=${ref}`)]);
    info(`ostree prune --depth=${p.depth}${p.refs.length ? ` (${p.refs.join(', ')})` : ''}: ${r.stdout.trim().split('\n').pop()}`);
  }
}
