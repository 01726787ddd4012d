/**
 * The reading half of gc: what is in a cache dir, gathered into the plain
 * facts planGc decides on. Nothing here writes; symlinks are never followed
 * (a cache dir whose tmp/, out/ or apt-archives/ is a link is refused by
 * ./guard.ts before anything is read through it).
 */
import { existsSync, lstatSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { isRealDir, localRepoPath, OUT_LEFTOVER } from '../compile/build.js';
import { readManifestJson } from '../compile/emit.js';
import { commitMetadata } from '../compile/ostree.js';
import { run } from '../exec.js';
import { defaultRef } from '../images.js';
import type { ValidManifest } from '../manifest/validate.js';
import type { Repo } from '../repo.js';
import { baseCacheRef, debianBaseKey } from '../steps/base-debian.js';
import type { CommitEntry, GcFacts, GcImage, OutVersion, RefHistory } from './plan.js';


export function gcImages(repo: Repo, images: ValidManifest[]): GcImage[] {
  return images.map(({ manifest: m }) => ({
    name: m.name,
    ref: defaultRef(repo, m),
    baseCacheRef: m.base.source === 'debian' ? baseCacheRef(debianBaseKey(m)) : undefined,
  }));
}

const entries = (dir: string) => (isRealDir(dir) ? readdirSync(dir).sort() : []);

export async function gatherFacts(repo: Repo, images: ValidManifest[], keep: number): Promise<GcFacts> {
  const cache = repo.cacheDir;
  const local = localRepoPath(repo);
  const hasRepo = existsSync(path.join(local, 'config'));
  const refs: RefHistory[] = [];
  const remoteRefs: RefHistory[] = [];
  if (hasRepo) {
    const listed = (await run('ostree', ['refs', `--repo=${local}`])).stdout.split('\n').map((l) => l.trim()).filter(Boolean);
    for (const ref of listed) {
      if (ref.includes(':')) remoteRefs.push({ ref, commits: await history(local, ref) });
      else refs.push({ ref, name: await commitMetadata(local, ref, 'treecast.name'), commits: await history(local, ref) });
    }
  }
  const out: GcFacts['out'] = [];
  const leftovers = entries(path.join(cache, 'tmp')).map((e) => `tmp/${e}`);
  // A repository-mode conversion killed half way (ensureRepoMode): the next build would remove
  // these too. repo.old is the only complete copy while repo/ is missing, so then it stays.
  const exists = (rel: string) => lstatSync(path.join(cache, rel), { throwIfNoEntry: false }) !== undefined;
  if (exists('repo.migrating')) leftovers.push('repo.migrating');
  if (exists('repo.old') && hasRepo) leftovers.push('repo.old');
  for (const name of entries(path.join(cache, 'out'))) {
    const dir = path.join(cache, 'out', name);
    if (!isRealDir(dir)) continue;
    const versions: OutVersion[] = [];
    for (const v of entries(dir)) {
      if (OUT_LEFTOVER.test(v)) leftovers.push(`out/${name}/${v}`);
      else if (!v.startsWith('.') && isRealDir(path.join(dir, v))) versions.push({ version: v, commit: readManifestJson(path.join(dir, v))?.commit });
    }
    out.push({ name, versions });
  }
  return {
    keep,
    images: gcImages(repo, images),
    refs,
    remoteRefs,
    commitObjects: hasRepo ? commitObjects(local) : [],
    out,
    publishedTips: readRefFiles(path.join(repo.publishDir, 'repo', 'refs', 'heads')),
    legacyAptCache: isRealDir(path.join(cache, 'apt-archives')),
    leftovers,
  };
}

/** A ref's commits, tip first, as far as the repository holds them (`ostree log` stops at a missing parent). */
async function history(repoPath: string, ref: string): Promise<CommitEntry[]> {
  const r = await run('ostree', ['log', `--repo=${repoPath}`, ref]);
  const commits: CommitEntry[] = [];
  for (const line of r.stdout.split('\n')) {
    const c = /^commit ([0-9a-f]{64})$/.exec(line);
    if (c) commits.push({ commit: c[1]! });
    const v = /^\s*Version:\s*(\S+)/.exec(line);
    if (v && commits.length) commits[commits.length - 1]!.version = v[1]!;
  }
  return commits;
}

function commitObjects(repoPath: string): string[] {
  const out: string[] = [];
  const objects = path.join(repoPath, 'objects');
  for (const fan of entries(objects)) for (const f of entries(path.join(objects, fan))) if (f.endsWith('.commit')) out.push(fan + f.slice(0, -'.commit'.length));
  return out;
}

/**
 * Refs of the publish dir's repository, read as files: gc never runs ostree
 * on the publish dir (opening a repository may write to it).
 */
function readRefFiles(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string, prefix: string) => {
    for (const e of entries(d)) {
      const p = path.join(d, e);
      const st = lstatSync(p);
      if (st.isDirectory()) walk(p, `${prefix}${e}/`);
      else if (st.isFile() && st.size < 200) {
        const text = readFileSafe(p);
        if (/^[0-9a-f]{64}$/.test(text)) out[`${prefix}${e}`] = text;
      }
    }
  };
  walk(dir, '');
  return out;
}

function readFileSafe(p: string): string {
  try {
    return readFileSync(p, 'utf8').trim();
  } catch {
    return '';
  }
}
