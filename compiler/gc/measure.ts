/**
 * Sizes for gc's report, du-like: allocated blocks, each inode once, links
 * never followed. "Freed" counts an inode only when every one of its hard
 * links is among the paths removed (a checkout hardlinked to repository
 * objects frees nothing).
 */
import { lstatSync, readdirSync, type Stats } from 'node:fs';
import path from 'node:path';
import { run } from '../exec.js';

function walk(p: string, visit: (p: string, st: Stats) => void): void {
  const st = lstatSync(p, { throwIfNoEntry: false });
  if (!st) return;
  visit(p, st);
  if (st.isDirectory()) for (const e of readdirSync(p)) walk(path.join(p, e), visit);
}

/** Disk usage of the trees at `paths` (each inode once). */
export function diskUsage(paths: string[]): number {
  const seen = new Set<string>();
  let bytes = 0;
  for (const p of paths)
    walk(p, (_, st) => {
      const id = `${st.dev}:${st.ino}`;
      if (seen.has(id)) return;
      seen.add(id);
      bytes += st.blocks * 512;
    });
  return bytes;
}

/** What removing the trees at `paths` would free: inodes all of whose links are inside them. */
export function freedBy(paths: string[]): number {
  const links = new Map<string, { seen: number; st: Stats }>();
  for (const p of paths)
    walk(p, (_, st) => {
      const id = `${st.dev}:${st.ino}`;
      const e = links.get(id);
      if (e) e.seen++;
      else links.set(id, { seen: 1, st });
    });
  let bytes = 0;
  for (const { seen, st } of links.values()) if (st.isDirectory() || seen >= st.nlink) bytes += st.blocks * 512;
  return bytes;
}

export interface ObjectFile {
  /** `<checksum>.<type>` */
  name: string;
  path: string;
}

const KIND: Record<string, string> = { commit: 'commit', commitmeta: 'commit', dirtree: 'dirtree', dirmeta: 'dirmeta', file: 'file', filez: 'file' };

/** Every object file of an ostree repository. */
export function objectFiles(repoPath: string): ObjectFile[] {
  const out: ObjectFile[] = [];
  const objects = path.join(repoPath, 'objects');
  const dirs = (d: string) => (lstatSync(d, { throwIfNoEntry: false })?.isDirectory() ? readdirSync(d).sort() : []);
  for (const fan of dirs(objects)) for (const f of dirs(path.join(objects, fan))) out.push({ name: fan + f, path: path.join(objects, fan, f) });
  return out;
}

/**
 * `kind:checksum` of every object the commits reach (commit, its trees,
 * metadata and files), as `ostree prune --refs-only` would count them
 * reachable: read from `ostree ls -R -C`, which prints the checksums.
 */
export async function reachableObjects(repoPath: string, commits: string[]): Promise<Set<string>> {
  const out = new Set<string>();
  for (const c of commits) {
    out.add(`commit:${c}`);
    const r = await run('ostree', ['ls', `--repo=${repoPath}`, '-R', '-C', c]);
    for (const line of r.stdout.split('\n')) {
      const m = /^([-dl])\d+ \d+ \d+\s+\d+ ([0-9a-f]{64})(?: ([0-9a-f]{64}))? \//.exec(line);
      if (!m) continue;
      if (m[1] === 'd') {
        out.add(`dirtree:${m[2]}`);
        out.add(`dirmeta:${m[3]}`);
      } else out.add(`file:${m[2]}`);
    }
  }
  return out;
}

/** Object files the commits do not reach: what a prune keeping only them deletes. */
export function unreachable(objects: ObjectFile[], reachable: Set<string>): ObjectFile[] {
  return objects.filter((o) => {
    const dot = o.name.indexOf('.');
    const kind = KIND[o.name.slice(dot + 1)];
    // Unknown kinds (tombstones) are ostree's business: not counted either way.
    return kind !== undefined && !reachable.has(`${kind}:${o.name.slice(0, dot)}`);
  });
}
