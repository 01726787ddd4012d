/**
 * Loads one image manifest with its include chain into a single located tree.
 * Merge rule (rpm-ostree's): includes first, in order, then the including
 * file; arrays concatenate, maps merge, scalars override. Every value keeps
 * the file, line and column it came from, and the include chain that pulled it in.
 */
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Diagnostic, Loc } from '../diagnostics.js';
import { displayPath, isInside, resolveRepoInput, type RepoDirs, type RepoInput, type RepoInputKind } from '../paths.js';
import { repoDirsOf } from '../repo.js';
import { LIMITS, parseYaml, type LNode } from './yaml.js';

export interface LoadedManifest {
  /** Absolute path of the top-level manifest. */
  file: string;
  /** Merged tree; `include` is removed once resolved. */
  root: LNode;
  /** Every manifest file read (the top-level one first), absolute, each once. */
  files: string[];
}

export type LoadResult = { ok: true; manifest: LoadedManifest } | { ok: false; diagnostics: Diagnostic[]; files: string[] };

interface LoadState {
  repo: RepoDirs;
  files: string[];
  diagnostics: Diagnostic[];
  /** By real path: a file included from several places is read and parsed once. */
  cache: Map<string, { root: LNode } | { failed: true }>;
  loads: number;
  bytes: number;
  exhausted: boolean;
}

/** `repo`: the Repo (its cache, publish and signing dirs are never inputs), or just its root directory. */
export function loadManifest(file: string, repo: string | RepoDirs): LoadResult {
  const dirs = typeof repo === 'string' ? repoDirsOf(repo) : repo;
  const abs = path.resolve(file);
  const st: LoadState = { repo: dirs, files: [], diagnostics: [], cache: new Map(), loads: 0, bytes: 0, exhausted: false };
  const shown = displayPath(dirs.root, abs);
  let real = abs;
  // A manifest named outside the repository comes from the operator's command line; one inside it obeys the input policy.
  if (isInside(dirs.root, abs)) {
    const r = resolveRepoInput(dirs, abs, 'file');
    if (!r.ok && r.code !== 'missing' && r.code !== 'type') {
      st.files.push(abs);
      return { ok: false, diagnostics: [{ loc: { file: shown, line: 1, col: 1 }, message: `manifest "${shown}" ${r.reason}`, hint: r.hint }], files: st.files };
    }
    if (r.ok) real = r.path;
  }
  st.loads = 1;
  try {
    st.bytes = statSync(real).size;
  } catch {
    /* readManifestText reports it */
  }
  const root = loadFile(abs, real, [], [], [], st);
  if (!root || st.diagnostics.length) return { ok: false, diagnostics: st.diagnostics, files: st.files };
  return { ok: true, manifest: { file: abs, root, files: st.files } };
}

/**
 * resolveRepoInput for a path written in a manifest, which may be anything a
 * string can hold: the file system calls behind it throw on a NUL byte (a
 * TypeError, not an errno) and on a name longer than the kernel takes
 * (ENAMETOOLONG). Found by the parser fuzz (test/reliability/fuzz.test.ts):
 * both crashed `validate` with exit 3 instead of a located error.
 */
export function resolveManifestPath(repo: RepoDirs, rel: string, kind: RepoInputKind, from?: string): RepoInput {
  if (rel.includes('\0')) return { ok: false, code: 'type', reason: 'contains a NUL byte (\\0)', hint: 'no file name can hold one' };
  try {
    return resolveRepoInput(repo, rel, kind, from);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (typeof code !== 'string' || !/^E[A-Z]+$/.test(code)) throw err; // only the file system's refusals are the input's fault
    const reason = code === 'ENAMETOOLONG' ? 'is too long a path for the file system (ENAMETOOLONG)' : `cannot be looked up (${code})`;
    return { ok: false, code: 'type', reason };
  }
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

/**
 * `abs` is the path as named (diagnostics, the include chain, `files`), `real`
 * the same file with symlinks resolved (what is read, and its identity for
 * cycles and the cache).
 */
function loadFile(abs: string, real: string, chain: string[], realChain: string[], via: Loc[], st: LoadState): LNode | undefined {
  const repoRoot = st.repo.root;
  const shown = displayPath(repoRoot, abs);
  if (!st.files.includes(abs)) st.files.push(abs);
  let parsedRoot: LNode;
  const cached = st.cache.get(real);
  if (cached) {
    if ('failed' in cached) return undefined; // reported where it was first included
    parsedRoot = cached.root;
  } else {
    const read = readManifestText(real, shown);
    if ('diagnostic' in read) {
      st.cache.set(real, { failed: true });
      st.diagnostics.push(withVia(read.diagnostic, via));
      return undefined;
    }
    const parsed = parseYaml(read.text, shown);
    if (!parsed.ok) {
      st.cache.set(real, { failed: true });
      st.diagnostics.push(...parsed.diagnostics.map((d) => withVia(d, via)));
      return undefined;
    }
    st.cache.set(real, { root: parsed.root });
    parsedRoot = parsed.root;
  }
  // relocate() copies; the top-level file is never served from the cache (including it again is a cycle).
  const own = via.length ? relocate(parsedRoot, via) : parsedRoot;
  if (own.kind !== 'map') {
    st.diagnostics.push({ loc: own.loc, message: `a manifest must be a map of keys, not ${own.kind === 'seq' ? 'a list' : 'a single value'}`, hint: 'start with "name: ..." at column 1' });
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
      st.diagnostics.push({ loc: item.loc, path: 'include', message: 'must be a path or a list of paths to YAML files' });
      continue;
    }
    includes.push({ path: item.value, loc: item.loc });
  }

  let merged: LNode | undefined;
  for (const { path: rel, loc } of includes) {
    if (st.exhausted) break;
    const target = path.resolve(path.dirname(abs), rel);
    const r = resolveManifestPath(st.repo, rel, 'file', path.dirname(abs));
    if (!r.ok) {
      if (r.code === 'outside') st.diagnostics.push({ loc, path: 'include', message: `include "${rel}" leaves the repository`, hint: 'includes must live inside the repository' });
      else if (r.code === 'missing') st.diagnostics.push({ loc, path: 'include', message: `included file "${rel}" does not exist (looked for ${displayPath(repoRoot, target)})` });
      else st.diagnostics.push({ loc, path: 'include', message: `include "${rel}" ${r.reason}`, hint: r.hint });
      continue;
    }
    if (r.path === real || realChain.includes(r.path)) {
      const chainText = [...chain, abs, target].map((f) => displayPath(repoRoot, f)).join(' -> ');
      st.diagnostics.push({ loc, path: 'include', message: `include cycle: ${chainText}` });
      continue;
    }
    const size = statSync(r.path).size;
    if (st.loads + 1 > LIMITS.includeFiles || st.bytes + size > LIMITS.includeBytes) {
      const what = st.loads + 1 > LIMITS.includeFiles ? `load more than ${LIMITS.includeFiles} files (LIMITS.includeFiles)` : `add up to more than ${LIMITS.includeBytes / 1048576} MiB (LIMITS.includeBytes)`;
      st.diagnostics.push({ loc, path: 'include', message: `refused: this manifest and its includes ${what}`, hint: 'every inclusion counts, also of a file already included elsewhere' });
      st.exhausted = true;
      break;
    }
    st.loads++;
    st.bytes += size;
    const sub = loadFile(target, r.path, [...chain, abs], [...realChain, real], [loc, ...via], st);
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
