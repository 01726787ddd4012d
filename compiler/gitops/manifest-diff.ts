/**
 * Semantic diff of two versions of a merged manifest: keys added, removed and
 * changed, package list changes, and file entries changed (by path). Pure.
 */
import { compareVersions, type ResolvedStream } from '../manifest/streams.js';
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

/**
 * What a commit does to an image's release streams. `promote` raises a pin
 * (or adds a pinned stream), `rollback` lowers one, `pin` pins a stream that
 * followed every build, `follow` removes a pin; `add`/`remove` a stream that
 * follows every build; `retarget` changes a stream's ref. None of them builds
 * anything: publish points refs at commits already published.
 */
export interface StreamChange {
  image: string;
  stream: string;
  action: 'promote' | 'rollback' | 'pin' | 'follow' | 'add' | 'remove' | 'retarget';
  /** The stream's ref after the change (before it, for `remove`). */
  ref: string;
  /** Pinned version, or ref for `retarget`, before and after (absent: follows every build / no stream). */
  from?: string;
  to?: string;
  /** One line for people, e.g. "promote edge-host 2026.11.3 to stable". */
  text: string;
}

/** Pure: the stream changes between two versions of an image's resolved streams (each sorted or not). */
export function diffStreams(image: string, before: ResolvedStream[], after: ResolvedStream[]): StreamChange[] {
  const out: StreamChange[] = [];
  const old = new Map(before.map((s) => [s.name, s]));
  const names = [...new Set([...before.map((s) => s.name), ...after.map((s) => s.name)])].sort();
  for (const name of names) {
    const b = old.get(name);
    const a = after.find((s) => s.name === name);
    if (!a) {
      out.push({ image, stream: name, action: 'remove', ref: b!.ref, from: b!.version, text: `remove stream ${name} of ${image} (its ref ${b!.ref} stays where it was published)` });
      continue;
    }
    const at = { image, stream: name, ref: a.ref };
    if (!b) {
      if (a.version === undefined) out.push({ ...at, action: 'add', text: `add stream ${name} of ${image}, following every build (${a.ref})` });
      else out.push({ ...at, action: 'promote', to: a.version, text: `promote ${image} ${a.version} to ${name}` });
      continue;
    }
    if (b.ref !== a.ref) out.push({ ...at, action: 'retarget', from: b.ref, to: a.ref, text: `move stream ${name} of ${image} from ref ${b.ref} to ${a.ref}` });
    if (b.version === a.version) continue;
    if (a.version === undefined) out.push({ ...at, action: 'follow', from: b.version, text: `${name} of ${image} follows every build again (was pinned to ${b.version})` });
    else if (b.version === undefined) out.push({ ...at, action: 'pin', to: a.version, text: `pin ${name} of ${image} to ${a.version} (it followed every build)` });
    else if (compareVersions(a.version, b.version) > 0) out.push({ ...at, action: 'promote', from: b.version, to: a.version, text: `promote ${image} ${a.version} to ${name}` });
    else out.push({ ...at, action: 'rollback', from: b.version, to: a.version, text: `roll back ${name} of ${image} from ${b.version} to ${a.version}` });
  }
  return out;
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
