/**
 * Content ids (osbuild's Stage.id idea): sha256 over everything an image
 * reads — the merged manifest, every include, overlay tree, source file and
 * script, and the commit of its base image. An image whose input hash is
 * already on its ref is not rebuilt. The git commit and the timestamp are
 * deliberately left out: an unrelated commit must not trigger a rebuild.
 */
import { createHash } from 'node:crypto';
import { readFileSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import { UserError } from '../diagnostics.js';
import type { ImageManifest } from '../manifest/types.js';
import { walkTree } from './rootfs.js';

/** Bump when a step's behaviour changes so old results are not reused. */
// 2: layered roots (bare repo, hardlink checkouts) and the initramfs step; the Debian base no longer carries an initramfs.
export const BUILDER_VERSION = 'treecast-build-2';

export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

export function sha256(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Hash of a directory tree: names, types, modes, link targets and contents (not owners or times: copies drop them). */
export function hashTree(dir: string): string {
  const h = createHash('sha256');
  for (const [rel, st] of walkTree(dir)) {
    const abs = path.join(dir, rel);
    if (st.isSymbolicLink()) h.update(`l ${rel} ${readlinkSync(abs)}\n`);
    else if (st.isDirectory()) h.update(`d ${rel} ${(st.mode & 0o7777).toString(8)}\n`);
    else if (st.isFile()) h.update(`f ${rel} ${(st.mode & 0o7777).toString(8)} ${sha256(readFileSync(abs))}\n`);
    else h.update(`x ${rel}\n`);
  }
  return h.digest('hex');
}

/** The files and trees of the repository an image reads (relative paths), for hashing and watching. */
export function inputPaths(m: ImageManifest): { trees: string[]; files: string[] } {
  const trees = [...(m.overlays ?? [])];
  if (m.base.source === 'tree' && m.base.path) trees.push(m.base.path);
  const files = (m.files ?? []).flatMap((f) => (f.source ? [f.source] : []));
  if (m['postprocess-script']) files.push(m['postprocess-script']);
  return { trees, files };
}

export function computeInputHash(m: ImageManifest, repoRoot: string, baseCommit?: string): string {
  const { trees, files } = inputPaths(m);
  const parts = {
    builder: BUILDER_VERSION,
    manifest: m,
    trees: Object.fromEntries(trees.map((t) => [t, readInput(t, () => hashTree(path.resolve(repoRoot, t)))])),
    files: Object.fromEntries(files.map((f) => [f, readInput(f, () => sha256(readFileSync(path.resolve(repoRoot, f))))])),
    baseCommit: baseCommit ?? null,
  };
  return sha256(canonicalJson(parts));
}

/** An input that vanished after validation is the user's problem, not an internal error: name it. */
function readInput<T>(rel: string, read: () => T): T {
  try {
    return read();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new UserError(`"${rel}" no longer exists in the repository (was it removed after validation?)`);
    throw err;
  }
}
