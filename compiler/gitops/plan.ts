/** What a change does: affected images with reasons and a semantic manifest diff each. */
import path from 'node:path';
import { existsSync } from 'node:fs';
import { loadManifest } from '../manifest/load.js';
import type { ImageManifest } from '../manifest/types.js';
import type { ValidManifest } from '../manifest/validate.js';
import { plain } from '../manifest/yaml.js';
import type { Repo } from '../repo.js';
import { changedPaths, checkoutAt, type ChangeSet } from './changes.js';
import { affectedImages, imageInputs, type Affected } from './graph.js';
import { diffManifests, type ManifestDiff } from './manifest-diff.js';

export interface ChangePlan {
  since?: string;
  changed: string[];
  affected: (Affected & { manifest: string })[];
  changes: Record<string, ManifestDiff>;
}

export async function planChanges(repo: Repo, images: ValidManifest[], since?: string): Promise<ChangePlan> {
  const cs: ChangeSet = await changedPaths(repo.root, since);
  const graph = images.map((i) => imageInputs(i, repo.root));
  const affected = cs.all ? images.map((i) => ({ name: i.manifest.name, reasons: ['no earlier commit to compare with: everything is new'] })) : affectedImages(graph, cs.paths);
  const changes: Record<string, ManifestDiff> = {};
  if (affected.length) {
    const before = cs.since ? await checkoutAt(repo.root, cs.since) : undefined;
    try {
      for (const a of affected) {
        const img = images.find((i) => i.manifest.name === a.name)!;
        changes[a.name] = diffManifests(before ? manifestAt(before.dir, path.relative(repo.root, img.file)) : undefined, img.manifest);
      }
    } finally {
      before?.cleanup();
    }
  }
  return {
    since: cs.since,
    changed: cs.paths,
    affected: affected.map((a) => ({ ...a, manifest: images.find((i) => i.manifest.name === a.name)!.shown })),
    changes,
  };
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
