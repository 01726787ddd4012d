import { UserError } from '../diagnostics.js';
import { copyFileIn, symlinkIn, writeFileIn } from '../compile/rootfs.js';
import type { FileEntry } from '../manifest/types.js';
import { resolveRepoInput, type RepoDirs } from '../paths.js';
import { accountPlan } from './users.js';
import type { Step } from './step.js';

/** Numeric id for an owner/group value: a number, digits, or a name known to the image (or declared in the manifest). */
export function resolveId(value: string | number | undefined, names: Map<string, number>, what: 'owner' | 'group'): number {
  if (value === undefined) return 0;
  if (typeof value === 'number') return value;
  if (/^\d+$/.test(value)) return Number(value);
  const id = names.get(value);
  if (id === undefined) throw new UserError(`${what} "${value}" does not exist in the image (declare it under ${what === 'owner' ? 'users' : 'groups'}: or use a numeric id)`);
  return id;
}

/**
 * files[]: exact content, mode, owner and group — set after overlays, so they
 * win, and before postprocess, so scripts can read them (rpm-ostree#779/#997).
 */
export const files: Step = {
  name: 'files',
  tools: [],
  applies: (m) => (m.files?.length ?? 0) > 0,
  async run(ctx) {
    const plan = accountPlan(ctx);
    ctx.manifest.files!.forEach((f, i) => {
      try {
        writeEntry(ctx.root, ctx.repo, f, plan.uidOf, plan.gidOf);
      } catch (err) {
        const where = `files[${i}] (${f.path})`;
        if (err instanceof UserError) throw new UserError(`${where}: ${err.message}`);
        throw new UserError(`${where}: ${(err as Error).message}`);
      }
    });
    return `${ctx.manifest.files!.length} files`;
  },
};

function writeEntry(root: string, repo: RepoDirs, f: FileEntry, uids: Map<string, number>, gids: Map<string, number>): void {
  const uid = resolveId(f.owner, uids, 'owner');
  const gid = resolveId(f.group, gids, 'group');
  if (f.symlink !== undefined) return symlinkIn(root, f.path, f.symlink, { uid, gid });
  const attrs = { uid, gid, mode: f.mode !== undefined ? parseInt(f.mode, 8) : 0o644 };
  if (f.source === undefined) return writeFileIn(root, f.path, f.content!, attrs);
  // The real path: copyFileIn refuses a final symlink, and an in-repo link is a fine source.
  const src = resolveRepoInput(repo, f.source, 'file');
  if (!src.ok) throw new UserError(src.code === 'missing' ? `source file "${f.source}" no longer exists in the repository` : `source "${f.source}" ${src.reason}`);
  try {
    copyFileIn(root, src.path, f.path, attrs);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new UserError(`source file "${f.source}" no longer exists in the repository`);
    throw err;
  }
}
