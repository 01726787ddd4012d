/**
 * Account ids across builds (docs/accounts.md). Files on a host carry numeric
 * owners: /var/home/alice, /var/lib/postgresql survive an upgrade, so a name
 * whose uid or gid moves between two commits of a ref hands those files to
 * someone else. The build compares the new image's ids with the parent
 * commit's (pure functions here), reuses the parent's ids where the manifest
 * leaves them open, and writes systemd-sysusers files so a host whose /etc
 * diverged still gets every account the image expects.
 */
import { run } from '../exec.js';
import { commitMetadata, parseTupleArray } from './ostree.js';

export interface AccountIds {
  users: Map<string, number>;
  groups: Map<string, number>;
}

/** What the build knows of the parent commit of the ref it is building. */
export interface PreviousImage {
  commit: string;
  ids: AccountIds;
  /** Package names of the parent (treecast.packages), to explain a moved system account. */
  packages: string[];
}

export interface IdChange {
  kind: 'user' | 'group';
  name: string;
  old: number;
  new: number;
}

const rowsOf = (text: string) =>
  text
    .split('\n')
    .filter((l) => l.trim() && !l.startsWith('#'))
    .map((l) => l.split(':'));

/** name -> id of /etc/passwd and /etc/group text (ids in the third field of both). */
export function idsOf(passwd: string, group: string): AccountIds {
  const ids = (text: string) => new Map(rowsOf(text).filter((r) => /^\d+$/.test(r[2] ?? '')).map((r) => [r[0]!, Number(r[2])]));
  return { users: ids(passwd), groups: ids(group) };
}

/**
 * Names present in both that changed id and are not in `allowed`. A name that
 * is gone, or new, is no change: only a moved id re-owns files on a host.
 */
export function idChanges(prev: AccountIds, next: AccountIds, allowed: ReadonlySet<string> = new Set()): IdChange[] {
  const out: IdChange[] = [];
  for (const kind of ['user', 'group'] as const) {
    const before = kind === 'user' ? prev.users : prev.groups;
    const after = kind === 'user' ? next.users : next.groups;
    for (const [name, id] of after) {
      const old = before.get(name);
      if (old !== undefined && old !== id && !allowed.has(name)) out.push({ kind, name, old, new: id });
    }
  }
  return out;
}

/** Packages added and removed between two package name lists, for the message about a moved system account. */
export function packageChange(before: readonly string[], after: readonly string[]): { added: string[]; removed: string[] } {
  const b = new Set(before);
  const a = new Set(after);
  return { added: [...a].filter((n) => !b.has(n)).sort(), removed: [...b].filter((n) => !a.has(n)).sort() };
}

/**
 * The parent commit's accounts, read from `localRepo`: the build repository,
 * or for a parent known only from the published tree the history repository
 * after fetching its /usr/etc (PublishedHistory.fetchEtc). Undefined when there
 * is no parent, or it has neither /usr/etc/passwd nor /usr/etc/group.
 */
export async function previousImage(localRepo: string, parent: string | undefined): Promise<PreviousImage | undefined> {
  if (!parent) return undefined;
  const cat = async (file: string) => {
    const r = await run('ostree', ['cat', `--repo=${localRepo}`, parent, file], { allowFailure: true });
    return r.exitCode === 0 ? r.stdout : undefined;
  };
  const passwd = await cat('/usr/etc/passwd');
  const group = await cat('/usr/etc/group');
  if (passwd === undefined && group === undefined) return undefined;
  const packages = parseTupleArray(await commitMetadata(localRepo, parent, 'treecast.packages')).map((t) => t[0]!);
  return { commit: parent, ids: idsOf(passwd ?? '', group ?? ''), packages };
}

/* The build hands the parent to the steps without widening BuildContext: files (owner names) and users both plan accounts from it. */
const previousByBuild = new WeakMap<object, PreviousImage>();
export function rememberPreviousImage(ctx: object, prev: PreviousImage | undefined): void {
  if (prev) previousByBuild.set(ctx, prev);
}
export const previousImageOf = (ctx: object): PreviousImage | undefined => previousByBuild.get(ctx);
