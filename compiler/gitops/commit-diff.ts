/**
 * `treecast diff A B`: what changed between two built or published commits
 * of an image — packages (from the commit metadata), files (`ostree diff`,
 * with sizes and modes from `ostree ls`), and metadata.
 */
import path from 'node:path';
import { existsSync } from 'node:fs';
import { commitMetadata, parseTupleArray, revParse } from '../compile/ostree.js';
import { readManifestJson } from '../compile/emit.js';
import { UserError } from '../diagnostics.js';
import { run } from '../exec.js';
import type { PackageChanges } from '../publish/catalog.js';
import { packageChanges } from '../publish/catalog.js';

export interface FileEntry {
  type: string;
  mode: string;
  uid: number;
  gid: number;
  size: number;
  target?: string;
}

export interface FileChange {
  path: string;
  kind: 'added' | 'removed' | 'modified';
  before?: FileEntry;
  after?: FileEntry;
}

export interface CommitDiff {
  repo: string;
  from: { spec: string; commit: string; version?: string };
  to: { spec: string; commit: string; version?: string };
  packages: PackageChanges;
  files: FileChange[];
  metadata: { key: string; before?: string; after?: string }[];
}

const META_KEYS = ['version', 'treecast.name', 'treecast.input-hash', 'treecast.manifest-sha256', 'treecast.git-commit', 'treecast.source-date-epoch', 'ostree.ref-binding'];

/** Where a spec (`name@version`, a ref, or a commit id) points, in the first repository that has it. */
export async function resolveSpec(spec: string, repos: string[], versionDirs: (name: string, version: string) => string[]): Promise<{ repo: string; commit: string } | undefined> {
  let candidate = spec;
  const at = /^([a-z0-9][a-z0-9._-]*)@(.+)$/.exec(spec);
  if (at) {
    const m = versionDirs(at[1]!, at[2]!).map(readManifestJson).find(Boolean);
    if (!m) return undefined;
    candidate = m.commit;
  }
  for (const repo of repos) {
    const c = await revParse(repo, candidate);
    // rev-parse echoes any well-formed checksum back: the commit object must also be there.
    if (c && (await run('ostree', ['show', `--repo=${repo}`, c], { allowFailure: true })).exitCode === 0) return { repo, commit: c };
  }
  return undefined;
}

export function parseLsLine(line: string): [string, FileEntry] | undefined {
  const m = /^([-dl])([0-7]+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\S.*?)(?: -> (.*))?$/.exec(line);
  if (!m) return undefined;
  return [m[6]!, { type: m[1] === 'd' ? 'dir' : m[1] === 'l' ? 'symlink' : 'file', mode: m[2]!.slice(-4), uid: Number(m[3]), gid: Number(m[4]), size: Number(m[5]), target: m[7] }];
}

async function listTree(repo: string, commit: string): Promise<Map<string, FileEntry>> {
  const r = await run('ostree', ['ls', `--repo=${repo}`, '-R', commit]);
  const out = new Map<string, FileEntry>();
  for (const line of r.stdout.split('\n')) {
    const e = parseLsLine(line);
    if (e) out.set(e[0], e[1]);
  }
  return out;
}

export async function diffCommits(repo: string, a: { spec: string; commit: string }, b: { spec: string; commit: string }): Promise<CommitDiff> {
  const d = await run('ostree', ['diff', `--repo=${repo}`, a.commit, b.commit]);
  const [before, after] = await Promise.all([listTree(repo, a.commit), listTree(repo, b.commit)]);
  const files: FileChange[] = [];
  for (const line of d.stdout.split('\n')) {
    const m = /^([AMD])\s+(.+)$/.exec(line.trim());
    if (!m) continue;
    const p = m[2]!;
    const kind = m[1] === 'A' ? 'added' : m[1] === 'D' ? 'removed' : 'modified';
    files.push({ path: p, kind, before: before.get(p), after: after.get(p) });
  }
  const pkgs = async (c: string) => parseTupleArray(await commitMetadata(repo, c, 'treecast.packages')).map(([name, version, arch]) => ({ name: name!, version: version!, arch: arch ?? '' }));
  const metadata: CommitDiff['metadata'] = [];
  for (const key of META_KEYS) {
    const [x, y] = await Promise.all([commitMetadata(repo, a.commit, key), commitMetadata(repo, b.commit, key)]);
    if (x !== y) metadata.push({ key, before: x, after: y });
  }
  return {
    repo,
    from: { ...a, version: await commitMetadata(repo, a.commit, 'version') },
    to: { ...b, version: await commitMetadata(repo, b.commit, 'version') },
    packages: packageChanges(await pkgs(a.commit), await pkgs(b.commit)),
    files: files.sort((x, y) => (x.path < y.path ? -1 : 1)),
    metadata,
  };
}

export function versionDirsFor(cacheDir: string, publishDir: string) {
  return (name: string, version: string) => [path.join(cacheDir, 'out', name, version), path.join(publishDir, 'images', name, version)].filter(existsSync);
}

export function describeFileChange(f: FileChange): string {
  const sym = f.kind === 'added' ? '+' : f.kind === 'removed' ? '-' : '~';
  const parts: string[] = [];
  if (f.kind === 'modified' && f.before && f.after) {
    if (f.before.size !== f.after.size) parts.push(`size ${f.before.size} -> ${f.after.size}`);
    if (f.before.mode !== f.after.mode) parts.push(`mode ${f.before.mode} -> ${f.after.mode}`);
    if (f.before.uid !== f.after.uid || f.before.gid !== f.after.gid) parts.push(`owner ${f.before.uid}:${f.before.gid} -> ${f.after.uid}:${f.after.gid}`);
    if (f.before.target !== f.after.target) parts.push(`link ${f.before.target} -> ${f.after.target}`);
    if (!parts.length) parts.push('content');
  } else {
    const e = f.after ?? f.before;
    if (e) parts.push(`${e.type} ${e.mode} ${e.size} bytes`);
  }
  return `${sym} ${f.path} (${parts.join(', ')})`;
}

export function assertResolved<T>(v: T | undefined, spec: string): T {
  if (!v) throw new UserError(`"${spec}" is not a built or published commit, ref or name@version`);
  return v;
}
