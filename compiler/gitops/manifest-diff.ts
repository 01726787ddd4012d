/**
 * Semantic diff of two versions of a merged manifest: keys added, removed and
 * changed, package list changes, and file entries changed (by path). Pure.
 */
import type { ImageManifest } from '../manifest/types.js';

export interface ManifestDiff {
  packages: { added: string[]; removed: string[] };
  files: { added: string[]; removed: string[]; changed: { path: string; fields: string[] }[] };
  keys: { key: string; kind: 'added' | 'removed' | 'changed'; before?: unknown; after?: unknown }[];
}

const json = (v: unknown) => JSON.stringify(v);

export function diffManifests(before: ImageManifest | undefined, after: ImageManifest): ManifestDiff {
  const b = (before ?? {}) as Record<string, unknown>;
  const a = after as unknown as Record<string, unknown>;
  const bp = new Set(before?.packages ?? []);
  const ap = new Set(after.packages ?? []);
  const bf = new Map((before?.files ?? []).map((f) => [f.path, f]));
  const af = new Map((after.files ?? []).map((f) => [f.path, f]));
  const diff: ManifestDiff = {
    packages: { added: [...ap].filter((p) => !bp.has(p)), removed: [...bp].filter((p) => !ap.has(p)) },
    files: { added: [...af.keys()].filter((p) => !bf.has(p)), removed: [...bf.keys()].filter((p) => !af.has(p)), changed: [] },
    keys: [],
  };
  for (const [p, f] of af) {
    const old = bf.get(p);
    if (!old) continue;
    const fields = [...new Set([...Object.keys(old), ...Object.keys(f)])].filter((k) => json((old as Record<string, unknown>)[k]) !== json((f as Record<string, unknown>)[k]));
    if (fields.length) diff.files.changed.push({ path: p, fields });
  }
  const walk = (prefix: string, x: unknown, y: unknown) => {
    const isMap = (v: unknown) => v !== null && typeof v === 'object' && !Array.isArray(v);
    if (isMap(x) && isMap(y)) {
      const keys = [...new Set([...Object.keys(x as object), ...Object.keys(y as object)])].sort();
      for (const k of keys) walk(prefix ? `${prefix}.${k}` : k, (x as Record<string, unknown>)[k], (y as Record<string, unknown>)[k]);
      return;
    }
    if (prefix === 'packages' || prefix === 'files') return; // reported above, item by item
    if (x === undefined && y !== undefined) diff.keys.push({ key: prefix, kind: 'added', after: y });
    else if (x !== undefined && y === undefined) diff.keys.push({ key: prefix, kind: 'removed', before: x });
    else if (json(x) !== json(y)) diff.keys.push({ key: prefix, kind: 'changed', before: x, after: y });
  };
  walk('', b, a);
  return diff;
}

export function isEmptyDiff(d: ManifestDiff): boolean {
  return !d.packages.added.length && !d.packages.removed.length && !d.files.added.length && !d.files.removed.length && !d.files.changed.length && !d.keys.length;
}

export interface Colors {
  add: (s: string) => string;
  del: (s: string) => string;
  chg: (s: string) => string;
  dim: (s: string) => string;
}

export const plainColors: Colors = { add: (s) => s, del: (s) => s, chg: (s) => s, dim: (s) => s };
export const ansiColors: Colors = {
  add: (s) => `\x1b[32m${s}\x1b[0m`,
  del: (s) => `\x1b[31m${s}\x1b[0m`,
  chg: (s) => `\x1b[33m${s}\x1b[0m`,
  dim: (s) => `\x1b[2m${s}\x1b[0m`,
};

export function formatManifestDiff(d: ManifestDiff, c: Colors, indent = '    '): string[] {
  const out: string[] = [];
  for (const p of d.packages.added) out.push(c.add(`${indent}+ package ${p}`));
  for (const p of d.packages.removed) out.push(c.del(`${indent}- package ${p}`));
  for (const p of d.files.added) out.push(c.add(`${indent}+ file ${p}`));
  for (const p of d.files.removed) out.push(c.del(`${indent}- file ${p}`));
  for (const f of d.files.changed) out.push(c.chg(`${indent}~ file ${f.path} (${f.fields.join(', ')})`));
  const short = (v: unknown) => {
    const s = JSON.stringify(v);
    return s.length > 60 ? `${s.slice(0, 57)}...` : s;
  };
  for (const k of d.keys) {
    if (k.kind === 'added') out.push(c.add(`${indent}+ ${k.key}: ${short(k.after)}`));
    else if (k.kind === 'removed') out.push(c.del(`${indent}- ${k.key}: ${short(k.before)}`));
    else out.push(c.chg(`${indent}~ ${k.key}: ${short(k.before)} -> ${short(k.after)}`));
  }
  return out;
}
