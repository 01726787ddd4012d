/** What a change does: affected images with reasons and a semantic manifest diff each. */
import path from 'node:path';
import { existsSync, readFileSync } from 'node:fs';
import { canonicalJson } from '../compile/input-hash.js';
import { defaultRef } from '../images.js';
import { loadManifest } from '../manifest/load.js';
import { mergeStreams, resolveStreams } from '../manifest/streams.js';
import type { ImageManifest, RepoConfig } from '../manifest/types.js';
import { imageStreams, type ValidManifest } from '../manifest/validate.js';
import { parseYaml, plain } from '../manifest/yaml.js';
import type { Repo } from '../repo.js';
import { affectedNodes, type AffectedNode } from '../nodes/affected.js';
import { loadNodes, NODES_FILE, toSpec, type NodeSpec, type NodesFile } from '../nodes/config.js';
import { changedPaths, checkoutAt, type ChangeSet } from './changes.js';
import { affectedImages, imageInputs, onlyManifestChanged, REPO_CONFIG, type Affected } from './graph.js';
import { diffManifests, diffStreams, isEmptyDiff, type ManifestDiff, type StreamChange } from './manifest-diff.js';

export interface ChangePlan {
  since?: string;
  changed: string[];
  /** Images to build: their build inputs changed. A promotion alone is not here. */
  affected: (Affected & { manifest: string })[];
  changes: Record<string, ManifestDiff>;
  /** Stream changes (promotions, roll-backs, ...): publish moves refs, nothing is built for them. */
  streams: StreamChange[];
  /** Nodes (nodes.yaml) to publish again: their image is affected, their entry or an overlay of theirs changed. */
  nodes: AffectedNode[];
}

export async function planChanges(repo: Repo, images: ValidManifest[], since?: string): Promise<ChangePlan> {
  const cs: ChangeSet = await changedPaths(repo.root, since);
  const graph = images.map((i) => imageInputs(i, repo.root));
  let affected = cs.all ? images.map((i) => ({ name: i.manifest.name, reasons: ['no earlier commit to compare with: everything is new'] })) : affectedImages(graph, cs.paths);
  const changes: Record<string, ManifestDiff> = {};
  const streams: StreamChange[] = [];
  if (affected.length) {
    const before = cs.since ? await checkoutAt(repo.root, cs.since) : undefined;
    try {
      const oldConfig = before ? configAt(before.dir) : undefined;
      const configOnlyStreams = Boolean(before) && cs.paths.includes(REPO_CONFIG) && sameBesidesStreams(oldConfig ?? {}, repo.config);
      const settled = new Set<string>();
      for (const a of affected) {
        const img = images.find((i) => i.manifest.name === a.name)!;
        const old = before ? manifestAt(before.dir, path.relative(repo.root, img.file)) : undefined;
        const { streams: oldOwn, ...oldBuild } = old ?? ({} as Partial<ImageManifest>);
        changes[a.name] = diffManifests(old ? (oldBuild as ImageManifest) : undefined, img.manifest);
        const oldStreams = old ? resolveStreamsAt(old, oldOwn, oldConfig) : [];
        const sc = diffStreams(a.name, oldStreams, imageStreams(img, defaultRef(repo, img.manifest)));
        streams.push(...sc);
        // Only the pins (or stream refs) changed: a promotion, nothing to build for this image.
        const g = graph.find((x) => x.name === a.name)!;
        if (old && sc.length && isEmptyDiff(changes[a.name]!) && onlyManifestChanged(g, cs.paths, configOnlyStreams)) settled.add(a.name);
      }
      if (settled.size) {
        affected = affectedImages(graph, cs.paths, settled);
        for (const name of Object.keys(changes)) if (!affected.some((a) => a.name === name)) delete changes[name];
      }
    } finally {
      before?.cleanup();
    }
  }
  const nodes = loadNodes(repo, images);
  let nodesBefore: NodeSpec[] | undefined;
  if (nodes.length && cs.since && !cs.all && cs.paths.includes(NODES_FILE)) {
    const before = await checkoutAt(repo.root, cs.since);
    try {
      nodesBefore = nodesAt(before.dir);
    } finally {
      before.cleanup();
    }
  }
  return {
    since: cs.since,
    changed: cs.paths,
    affected: affected.map((a) => ({ ...a, manifest: images.find((i) => i.manifest.name === a.name)!.shown })),
    changes,
    streams,
    nodes: affectedNodes({ repoRoot: repo.root, nodes, affectedImages: affected.map((a) => a.name), changed: cs.paths, before: nodesBefore, all: cs.all }),
  };
}

/** nodes.yaml as it was (parsed, not validated: it only tells which entries changed). */
function nodesAt(root: string): NodeSpec[] {
  const file = path.join(root, NODES_FILE);
  if (!existsSync(file)) return [];
  const parsed = parseYaml(readFileSync(file, 'utf8'), NODES_FILE);
  if (!parsed.ok) return [];
  const v = plain(parsed.root) as NodesFile | null;
  const list = v && typeof v === 'object' && Array.isArray(v.nodes) ? v.nodes : [];
  return list.filter((n) => n && typeof n.name === 'string' && typeof n.mac === 'string').map(toSpec);
}

/** The streams an image had at the earlier commit, with that commit's treecast.yaml defaults and arch. */
function resolveStreamsAt(old: ImageManifest, own: ImageManifest['streams'], config: RepoConfig | undefined) {
  const { specs, fromDefaults } = mergeStreams(config?.streams, own);
  return resolveStreams(old.ref ?? `${old.name}/${config?.arch ?? 'x86_64'}/stable`, specs, fromDefaults);
}

/** treecast.yaml as it was (parsed, not validated: it only feeds the "before" side of a diff). */
function configAt(root: string): RepoConfig | undefined {
  const file = path.join(root, REPO_CONFIG);
  if (!existsSync(file)) return undefined;
  const parsed = parseYaml(readFileSync(file, 'utf8'), REPO_CONFIG);
  if (!parsed.ok) return undefined;
  const v = plain(parsed.root);
  return v && typeof v === 'object' && !Array.isArray(v) ? (v as RepoConfig) : undefined;
}

/** Pure: two treecast.yaml values equal except for `streams` (which never changes a build). */
export function sameBesidesStreams(a: RepoConfig, b: RepoConfig): boolean {
  const { streams: _a, ...ra } = a;
  const { streams: _b, ...rb } = b;
  return canonicalJson(ra) === canonicalJson(rb);
}

/** The merged manifest as it was (YAML + includes only: its overlays may no longer exist). */
function manifestAt(root: string, rel: string): ImageManifest | undefined {
  const file = path.join(root, rel);
  if (!existsSync(file)) return undefined;
  const r = loadManifest(file, root);
  return r.ok ? (plain(r.manifest.root) as ImageManifest) : undefined;
}

/** GitHub Actions strategy.matrix: one entry per affected image. */
export function toMatrix(plan: ChangePlan): { include: { image: string; manifest: string }[] } {
  return { include: plan.affected.map((a) => ({ image: a.name, manifest: a.manifest })) };
}
