/**
 * Loads one image manifest with its include chain into a single located tree.
 * Merge rule (rpm-ostree's): includes first, in order, then the including
 * file; arrays concatenate, maps merge, scalars override. Every value keeps
 * the file, line and column it came from, and the include chain that pulled it in.
 */
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Diagnostic, Loc } from '../diagnostics.js';
import { displayPath, isInside } from '../paths.js';
import { LIMITS, parseYaml, type LNode } from './yaml.js';

export interface LoadedManifest {
  /** Absolute path of the top-level manifest. */
  file: string;
  /** Merged tree; `include` is removed once resolved. */
  root: LNode;
  /** Every manifest file read (the top-level one first), absolute. */
  files: string[];
}

export type LoadResult = { ok: true; manifest: LoadedManifest } | { ok: false; diagnostics: Diagnostic[]; files: string[] };

export function loadManifest(file: string, repoRoot: string): LoadResult {
  const abs = path.resolve(file);
  const files: string[] = [];
  const diagnostics: Diagnostic[] = [];
  const root = loadFile(abs, repoRoot, [], [], files, diagnostics);
  if (!root || diagnostics.length) return { ok: false, diagnostics, files };
  return { ok: true, manifest: { file: abs, root, files } };
}

/** Reads a text file as a manifest: size limit, UTF-8 check, YAML parse. */
export function readManifestText(abs: string, shown: string): { text: string } | { diagnostic: Diagnostic } {
  const size = statSync(abs).size;
  if (size > LIMITS.bytes) {
    return { diagnostic: { loc: { file: shown, line: 1, col: 1 }, message: `refused: file is ${(size / 1048576).toFixed(1)} MiB, manifests are limited to ${LIMITS.bytes / 1048576} MiB` } };
  }
  const bytes = readFileSync(abs);
  try {
    return { text: new TextDecoder('utf-8', { fatal: true }).decode(bytes).replace(/^\uFEFF/, '') };
  } catch {
    const bad = firstInvalidUtf8(bytes);
    const before = bytes.subarray(0, bad).toString('utf8');
    const lines = before.split('\n');
    return {
      diagnostic: {
        loc: { file: shown, line: lines.length, col: lines[lines.length - 1]!.length + 1 },
        message: `file is not valid UTF-8 (byte 0x${bytes[bad]!.toString(16).padStart(2, '0')} at offset ${bad})`,
        hint: 'save the manifest as UTF-8',
      },
    };
  }
}

function loadFile(abs: string, repoRoot: string, chain: string[], via: Loc[], files: string[], diagnostics: Diagnostic[]): LNode | undefined {
  const shown = displayPath(repoRoot, abs);
  files.push(abs);
  const read = readManifestText(abs, shown);
  if ('diagnostic' in read) {
    diagnostics.push(withVia(read.diagnostic, via));
    return undefined;
  }
  const parsed = parseYaml(read.text, shown);
  if (!parsed.ok) {
    diagnostics.push(...parsed.diagnostics.map((d) => withVia(d, via)));
    return undefined;
  }
  const own = via.length ? relocate(parsed.root, via) : parsed.root;
  if (own.kind !== 'map') {
    diagnostics.push({ loc: own.loc, message: `a manifest must be a map of keys, not ${own.kind === 'seq' ? 'a list' : 'a single value'}`, hint: 'start with "name: ..." at column 1' });
    return undefined;
  }
  const includeEntry = own.entries.get('include');
  if (!includeEntry) return own;
  own.entries.delete('include');

  const includes: { path: string; loc: Loc }[] = [];
  const inc = includeEntry.node;
  const items = inc.kind === 'seq' ? inc.items : [inc];
  for (const item of items) {
    if (item.kind !== 'scalar' || typeof item.value !== 'string' || item.value === '') {
      diagnostics.push({ loc: item.loc, path: 'include', message: 'must be a path or a list of paths to YAML files' });
      continue;
    }
    includes.push({ path: item.value, loc: item.loc });
  }

  let merged: LNode | undefined;
  for (const { path: rel, loc } of includes) {
    const target = path.resolve(path.dirname(abs), rel);
    const chainText = [...chain, abs, target].map((f) => displayPath(repoRoot, f)).join(' -> ');
    if (!isInside(repoRoot, target)) {
      diagnostics.push({ loc, path: 'include', message: `include "${rel}" leaves the repository`, hint: 'includes must live inside the repository' });
      continue;
    }
    if (target === abs || chain.includes(target)) {
      diagnostics.push({ loc, path: 'include', message: `include cycle: ${chainText}` });
      continue;
    }
    let isFile = false;
    try {
      isFile = statSync(target).isFile();
    } catch {
      /* reported below */
    }
    if (!isFile) {
      diagnostics.push({ loc, path: 'include', message: `included file "${rel}" does not exist (looked for ${displayPath(repoRoot, target)})` });
      continue;
    }
    const sub = loadFile(target, repoRoot, [...chain, abs], [loc, ...via], files, diagnostics);
    if (!sub) continue;
    merged = merged ? mergeNodes(merged, sub) : sub;
  }
  return merged ? mergeNodes(merged, own) : own;
}

/** rpm-ostree's include rule: arrays concatenate, maps merge, scalars override. */
export function mergeNodes(base: LNode, over: LNode): LNode {
  if (base.kind === 'map' && over.kind === 'map') {
    const entries = new Map(base.entries);
    for (const [k, e] of over.entries) {
      const prev = entries.get(k);
      entries.set(k, prev ? { keyLoc: e.keyLoc, node: mergeNodes(prev.node, e.node) } : e);
    }
    return { kind: 'map', loc: over.loc, entries };
  }
  if (base.kind === 'seq' && over.kind === 'seq') return { kind: 'seq', loc: over.loc, items: [...base.items, ...over.items] };
  return over;
}

function withVia(d: Diagnostic, via: Loc[]): Diagnostic {
  return via.length && d.loc ? { ...d, loc: { ...d.loc, via } } : d;
}

/** Stamp the include chain on every location of an included file's tree. */
function relocate(node: LNode, via: Loc[]): LNode {
  const loc = { ...node.loc, via };
  if (node.kind === 'scalar') return { ...node, loc };
  if (node.kind === 'seq') return { kind: 'seq', loc, items: node.items.map((n) => relocate(n, via)) };
  const entries = new Map<string, { keyLoc: Loc; node: LNode }>();
  for (const [k, e] of node.entries) entries.set(k, { keyLoc: { ...e.keyLoc, via }, node: relocate(e.node, via) });
  return { kind: 'map', loc, entries };
}

function firstInvalidUtf8(bytes: Uint8Array): number {
  for (let i = 0; i < bytes.length; ) {
    const b = bytes[i]!;
    const n = b < 0x80 ? 1 : b >= 0xc2 && b < 0xe0 ? 2 : b >= 0xe0 && b < 0xf0 ? 3 : b >= 0xf0 && b < 0xf5 ? 4 : 0;
    if (n === 0) return i;
    for (let j = 1; j < n; j++) if (((bytes[i + j] ?? 0) & 0xc0) !== 0x80) return i;
    i += n;
  }
  return 0;
}
