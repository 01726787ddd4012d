/** Changed paths from git: REV..HEAD plus uncommitted changes (simple-git). */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { simpleGit } from 'simple-git';
import { UserError } from '../diagnostics.js';
import { run } from '../exec.js';
import { isGitRepo } from '../git.js';

export interface ChangeSet {
  since?: string;
  /** Repo-relative paths changed, deleted, added or renamed (both names). */
  paths: string[];
  /** True when there is no base to compare with: everything counts as changed. */
  all: boolean;
}

export async function changedPaths(repoRoot: string, since?: string): Promise<ChangeSet> {
  if (!(await isGitRepo(repoRoot))) return { paths: [], all: true };
  const git = simpleGit(repoRoot);
  let base = since;
  if (!base) {
    try {
      base = (await git.revparse(['--verify', '--quiet', 'HEAD~1'])).trim() || undefined;
    } catch {
      base = undefined;
    }
  } else {
    try {
      await git.revparse(['--verify', `${base}^{commit}`]);
    } catch {
      throw new UserError(`--since ${base}: not a commit of this repository`);
    }
  }
  const paths = new Set<string>();
  // Paths git reports are relative to the git top level; treecast's to the repository root.
  const top = (await git.revparse(['--show-toplevel'])).trim();
  const toRepo = (p: string) => path.relative(repoRoot, path.join(top, p));
  let hasHead = true;
  try {
    await git.revparse(['--verify', 'HEAD']);
  } catch {
    hasHead = false;
  }
  if (base && hasHead) {
    // -z: paths verbatim (without it git C-quotes names with non-ASCII bytes, quotes or tabs).
    // Records are STATUS\0PATH\0, renames and copies STATUS\0FROM\0TO\0.
    const out = (await git.raw(['diff', '--name-status', '-z', '-M', `${base}..HEAD`])).split('\0');
    for (let i = 0; i < out.length; ) {
      const status = out[i++]!;
      if (!status) continue;
      const n = /^[RC]/.test(status) ? 2 : 1;
      for (let k = 0; k < n && i < out.length; k++) paths.add(toRepo(out[i++]!));
    }
  }
  const st = await git.status(['--untracked-files=all']);
  for (const f of st.files) paths.add(toRepo(f.path));
  for (const r of st.renamed) paths.add(toRepo(r.from)), paths.add(toRepo(r.to));
  return { since: base, paths: [...paths].filter((p) => !p.startsWith('..')).sort(), all: !base || !hasHead };
}

/** The repository as it was at REV, extracted into a temp dir (for the "before" side of a manifest diff). */
export async function checkoutAt(repoRoot: string, rev: string): Promise<{ dir: string; cleanup: () => void }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'treecast-at-'));
  const git = simpleGit(repoRoot);
  const top = (await git.revparse(['--show-toplevel'])).trim();
  const prefix = path.relative(top, repoRoot);
  const archive = path.join(dir, 'rev.tar');
  await run('git', ['-C', top, 'archive', '--format=tar', `--output=${archive}`, rev, ...(prefix ? [prefix] : [])]);
  await run('tar', ['-xf', archive, '-C', dir]);
  rmSync(archive);
  return { dir: path.join(dir, prefix), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
