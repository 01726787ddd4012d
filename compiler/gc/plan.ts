/**
 * What `treecast gc` removes from a cache dir, decided without I/O from facts
 * the caller gathered (./facts.ts): the tests call it on plain objects, and
 * --dry-run prints exactly this plan.
 *
 * Kept, always: per current image the newest `keep` local commits of its ref,
 * the commits a kept out/ version or the published tip of the ref needs, the
 * newest `keep` out/ versions (never fewer than the newest one) and the
 * version the ref points at; the base cache of every current Debian manifest;
 * refs of remotes.
 */

export const CACHE_REF_PREFIX = 'treecast/cache/';

export interface GcImage {
  name: string;
  ref: string;
  /** Base cache ref the image's build would check out (base.source: debian). */
  baseCacheRef?: string;
}

export interface CommitEntry {
  commit: string;
  version?: string;
}

export interface RefHistory {
  ref: string;
  /** Image name recorded in the tip commit (`treecast.name`). */
  name?: string;
  /** Tip first, as far as the repository holds the history. */
  commits: CommitEntry[];
}

export interface OutVersion {
  version: string;
  /** From its MANIFEST.json (absent when that is unreadable). */
  commit?: string;
}

export interface GcFacts {
  keep: number;
  images: GcImage[];
  /** Local refs of the build repository. */
  refs: RefHistory[];
  /** Refs of remotes (`remote:ref`): gc keeps their whole history. */
  remoteRefs: RefHistory[];
  /** Every commit object in the build repository. */
  commitObjects: string[];
  /** out/<name>/<version> directories (dot entries excluded: those are leftovers). */
  out: { name: string; versions: OutVersion[] }[];
  /** ref -> commit of the refs in the publish dir's repository. */
  publishedTips: Record<string, string>;
  /** `apt-archives/` exists: the per-cache .deb downloads of treecasts before the per-user apt cache. */
  legacyAptCache: boolean;
  /** Leftovers of interrupted builds, relative to the cache dir. */
  leftovers: string[];
}

export type GcCategory = 'leftovers' | 'out' | 'repo' | 'apt-archives';
export const CATEGORIES: GcCategory[] = ['leftovers', 'out', 'repo', 'apt-archives'];

export interface GcItem {
  category: GcCategory;
  kind: 'leftover' | 'out-version' | 'out-image' | 'cache-ref' | 'image-ref' | 'commit' | 'apt-cache';
  /** What is removed: a path relative to the cache dir, a ref, or a commit. */
  what: string;
  reason: string;
}

export interface GcPlan {
  items: GcItem[];
  /** Paths relative to the cache dir. */
  leftovers: string[];
  outDirs: string[];
  aptDirs: string[];
  deleteRefs: string[];
  /** `ostree prune --refs-only --depth=D --only-branch=...` per group of the local refs that stay. */
  prune: { depth: number; refs: string[] }[];
  /** Commits the repository keeps: what the prune leaves reachable. */
  keptCommits: string[];
}

/** Automatic versions (`20240101.3`, `7.0.12`) in numeric order, oldest first. */
export function compareVersions(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}

export function planGc(f: GcFacts): GcPlan {
  if (!Number.isInteger(f.keep) || f.keep < 1) throw new Error(`keep must be a positive integer, got ${f.keep}`);
  const items: GcItem[] = [];
  const byName = new Map(f.images.map((i) => [i.name, i]));
  const byRef = new Map(f.images.map((i) => [i.ref, i]));
  const refs = new Map(f.refs.map((r) => [r.ref, r]));

  for (const p of f.leftovers) {
    const reason = p.startsWith('repo.') ? "leftover of an interrupted conversion of the build repository's mode" : 'leftover of an interrupted build';
    items.push({ category: 'leftovers', kind: 'leftover', what: p, reason });
  }

  // out/: versions first, because the commits they hold decide how much history each ref keeps.
  const outDirs: string[] = [];
  const keptOut = new Map<string, OutVersion[]>();
  for (const o of [...f.out].sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const image = byName.get(o.name);
    if (!image) {
      outDirs.push(`out/${o.name}`);
      items.push({ category: 'out', kind: 'out-image', what: `out/${o.name}`, reason: `no image named "${o.name}" in the repository (${o.versions.length} version(s))` });
      continue;
    }
    const tip = refs.get(image.ref)?.commits[0];
    const newest = [...o.versions].sort((a, b) => compareVersions(b.version, a.version));
    const kept = newest.filter((v, i) => i < f.keep || (tip !== undefined && (v.commit === tip.commit || v.version === tip.version)));
    keptOut.set(o.name, kept);
    for (const v of newest) {
      if (kept.includes(v)) continue;
      const what = `out/${o.name}/${v.version}`;
      outDirs.push(what);
      items.push({ category: 'out', kind: 'out-version', what, reason: `${o.name}: older than the ${f.keep} newest version(s) (${kept.map((k) => k.version).join(', ')})` });
    }
  }

  const deleteRefs: string[] = [];
  const depths = new Map<number, string[]>();
  const kept = new Set<string>();
  const dropped: GcItem[] = [];
  const keepHistory = (r: RefHistory, depth: number) => {
    (depths.get(depth) ?? depths.set(depth, []).get(depth)!).push(r.ref);
    for (const c of r.commits.slice(0, depth + 1)) kept.add(c.commit);
  };
  for (const r of [...f.refs].sort((a, b) => (a.ref < b.ref ? -1 : 1))) {
    if (r.ref.startsWith(CACHE_REF_PREFIX)) {
      if (f.images.some((i) => i.baseCacheRef === r.ref)) {
        // A base cache is only ever checked out at its tip (a --force rebuild commits on top of it).
        keepHistory(r, 0);
        for (const c of r.commits.slice(1)) dropped.push({ category: 'repo', kind: 'commit', what: c.commit, reason: `${r.ref}: an older base cache (only the tip is used)` });
      } else {
        deleteRefs.push(r.ref);
        items.push({ category: 'repo', kind: 'cache-ref', what: r.ref, reason: 'a cache no current manifest uses' });
      }
      continue;
    }
    const image = byRef.get(r.ref);
    if (!image) {
      deleteRefs.push(r.ref);
      const last = r.commits[0];
      const who = r.name ? `image "${r.name}"` : 'an image';
      items.push({ category: 'repo', kind: 'image-ref', what: r.ref, reason: `${who}, last built ${last?.version ?? '(no version)'} ${last?.commit.slice(0, 12) ?? ''}: no image of the repository builds this ref` });
      continue;
    }
    const needed = [f.keep - 1];
    for (const v of keptOut.get(image.name) ?? []) needed.push(r.commits.findIndex((c) => c.commit === v.commit));
    const published = f.publishedTips[r.ref];
    if (published) needed.push(r.commits.findIndex((c) => c.commit === published));
    const depth = Math.max(0, Math.min(Math.max(...needed), r.commits.length - 1));
    keepHistory(r, depth);
    for (const c of r.commits.slice(depth + 1)) {
      dropped.push({ category: 'repo', kind: 'commit', what: c.commit, reason: `${r.ref} ${c.version ?? '(no version)'}: older than the ${depth + 1} newest commit(s) kept on the ref` });
    }
  }
  for (const r of f.remoteRefs) for (const c of r.commits) kept.add(c.commit);
  // A commit is listed once, though several refs may have dropped it; one another ref keeps is not dropped.
  const seen = new Set<string>();
  for (const d of dropped) {
    if (kept.has(d.what) || seen.has(d.what)) continue;
    seen.add(d.what);
    items.push(d);
  }
  const inHistory = new Set([...f.refs, ...f.remoteRefs].flatMap((r) => r.commits.map((c) => c.commit)));
  for (const c of [...f.commitObjects].sort()) {
    if (!inHistory.has(c)) items.push({ category: 'repo', kind: 'commit', what: c, reason: 'on no ref (e.g. a published base pulled by checksum; a build pulls it again when needed)' });
  }

  // Builds download into the per-user cache (TREECAST_APT_CACHE, else ~/.cache/treecast/apt-archives) and never read this one again.
  const aptDirs = f.legacyAptCache ? ['apt-archives'] : [];
  for (const d of aptDirs) items.push({ category: 'apt-archives', kind: 'apt-cache', what: d, reason: 'old per-cache .deb downloads: builds use the per-user apt cache (TREECAST_APT_CACHE) and no longer read it' });

  return {
    items,
    leftovers: [...f.leftovers],
    outDirs,
    aptDirs,
    deleteRefs,
    prune: [...depths.entries()].sort(([a], [b]) => a - b).map(([depth, r]) => ({ depth, refs: r })),
    keptCommits: [...kept].sort(),
  };
}
