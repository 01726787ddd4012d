/**
 * The dependency graph from each image to every input it reads, and the pure
 * question "which images does this set of changed paths affect, and why".
 */
import path from 'node:path';
import { inputPaths } from '../compile/input-hash.js';
import type { ValidManifest } from '../manifest/validate.js';

export interface ImageInputs {
  name: string;
  /** Repo-relative files: the manifest and its includes, `source` files, postprocess-script. */
  files: { path: string; role: string }[];
  /** Repo-relative directories: overlays, base tree. */
  trees: { path: string; role: string }[];
  baseImage?: string;
}

export const REPO_CONFIG = 'treecast.yaml';

export function imageInputs(img: ValidManifest, repoRoot: string): ImageInputs {
  const rel = (p: string) => path.relative(repoRoot, path.resolve(repoRoot, p));
  const m = img.manifest;
  const { trees, files } = inputPaths(m);
  return {
    name: m.name,
    files: [
      ...img.files.map((f, i) => ({ path: path.relative(repoRoot, f), role: i === 0 ? 'manifest' : 'include' })),
      ...files.map((f) => ({ path: rel(f), role: f === m['postprocess-script'] ? 'postprocess-script' : 'source file' })),
      { path: REPO_CONFIG, role: 'repository config' },
    ],
    trees: trees.map((t) => ({ path: rel(t), role: m.base.source === 'tree' && t === m.base.path ? 'base tree' : 'overlay' })),
    baseImage: m.base.source === 'image' ? m.base.image : undefined,
  };
}

export interface Affected {
  name: string;
  reasons: string[];
}

const under = (dir: string, p: string) => p === dir || p.startsWith(dir.replace(/\/$/, '') + '/');

/**
 * Images affected by changed paths (repo-relative), with reasons; derived images follow their base.
 * `settled`: images whose own changes are known not to touch the build (a promotion: only
 * their streams changed); they are affected only through a base image.
 */
export function affectedImages(graph: ImageInputs[], changed: string[], settled: ReadonlySet<string> = new Set()): Affected[] {
  const direct = new Map<string, string[]>();
  for (const g of graph) {
    if (settled.has(g.name)) continue;
    const reasons: string[] = [];
    for (const c of changed) {
      const f = g.files.find((x) => x.path === c);
      if (f) reasons.push(`${c} changed (${f.role})`);
      const t = g.trees.find((x) => under(x.path, c));
      if (t) reasons.push(`${c} changed (${t.role} ${t.path})`);
    }
    if (reasons.length) direct.set(g.name, reasons);
  }
  // Propagate through base images until nothing new is affected.
  const result = new Map(direct);
  let grew = true;
  while (grew) {
    grew = false;
    for (const g of graph) {
      if (g.baseImage && result.has(g.baseImage) && !result.has(g.name)) {
        result.set(g.name, [`base image ${g.baseImage} is affected`]);
        grew = true;
      }
    }
  }
  return graph.filter((g) => result.has(g.name)).map((g) => ({ name: g.name, reasons: result.get(g.name)! }));
}

/**
 * True when every changed path that reaches the image is its manifest or an
 * include — or treecast.yaml when `configChangedOnlyInStreams` — so the change
 * can be nothing but what the manifests say (the caller compares those).
 */
export function onlyManifestChanged(g: ImageInputs, changed: string[], configChangedOnlyInStreams: boolean): boolean {
  for (const c of changed) {
    if (g.trees.some((t) => under(t.path, c))) return false;
    const f = g.files.find((x) => x.path === c);
    if (!f) continue;
    if (f.role === 'manifest' || f.role === 'include') continue;
    if (f.role === 'repository config' && configChangedOnlyInStreams) continue;
    return false;
  }
  return true;
}

/** Every path to watch for an image set (files and trees), deduplicated. */
export function watchPaths(graph: ImageInputs[]): string[] {
  return [...new Set(graph.flatMap((g) => [...g.files.map((f) => f.path), ...g.trees.map((t) => t.path)]))].sort();
}
