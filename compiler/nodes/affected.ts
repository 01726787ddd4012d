/**
 * Which nodes a change affects (pure, for `treecast plan`): a node follows
 * its image, its own nodes.yaml entry, and the files of its overlays.
 */
import path from 'node:path';
import { canonicalJson } from '../compile/input-hash.js';
import type { NodeSpec } from './config.js';

export interface AffectedNode {
  name: string;
  image: string;
  reasons: string[];
}

const under = (dir: string, p: string) => p === dir || p.startsWith(dir.replace(/\/$/, '') + '/');

/**
 * `before`: the nodes of nodes.yaml at the earlier commit, when nodes.yaml changed
 * (undefined: it did not, so no entry changed). `all`: nothing to compare with.
 */
export function affectedNodes(o: { repoRoot: string; nodes: NodeSpec[]; affectedImages: string[]; changed: string[]; before?: NodeSpec[]; all?: boolean }): AffectedNode[] {
  const out: AffectedNode[] = [];
  for (const n of o.nodes) {
    const reasons: string[] = [];
    if (o.all) reasons.push('no earlier commit to compare with: everything is new');
    if (o.affectedImages.includes(n.image)) reasons.push(`its image ${n.image} is affected`);
    if (o.before) {
      const old = o.before.find((b) => b.name === n.name);
      if (!old) reasons.push('new in nodes.yaml');
      else if (canonicalJson(old) !== canonicalJson(n)) reasons.push('its nodes.yaml entry changed');
    }
    for (const ov of n.overlays) {
      const dir = path.relative(o.repoRoot, path.resolve(o.repoRoot, ov));
      for (const c of o.changed) if (under(dir, c)) reasons.push(`${c} changed (node overlay ${dir})`);
    }
    if (reasons.length) out.push({ name: n.name, image: n.image, reasons });
  }
  return out;
}
