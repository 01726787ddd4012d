/** What git says about the repository of image specs (simple-git). */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { simpleGit } from 'simple-git';

export async function isGitRepo(dir: string): Promise<boolean> {
  if (!existsSync(path.join(dir, '.git'))) {
    try {
      return await simpleGit(dir).checkIsRepo();
    } catch {
      return false;
    }
  }
  return true;
}

/** HEAD commit id, with `-dirty` when tracked or untracked files differ from it; "none" outside git. */
export async function gitDescribe(dir: string): Promise<string> {
  if (!(await isGitRepo(dir))) return 'none';
  const git = simpleGit(dir);
  let head: string;
  try {
    head = (await git.revparse(['HEAD'])).trim();
  } catch {
    return 'none'; // a repository without commits
  }
  const status = await git.status();
  return status.isClean() ? head : `${head}-dirty`;
}

/** Commit time of HEAD (seconds), the default SOURCE_DATE_EPOCH. */
export async function gitHeadTime(dir: string): Promise<number | undefined> {
  if (!(await isGitRepo(dir))) return undefined;
  try {
    const out = await simpleGit(dir).raw(['log', '-1', '--format=%ct', 'HEAD']);
    const n = Number(out.trim());
    return Number.isFinite(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}
