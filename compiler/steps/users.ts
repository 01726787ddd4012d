import path from 'node:path';
import { idChanges, idsOf, packageChange, previousImageOf, type IdChange } from '../compile/account-ids.js';
import { planAccounts, sysusersLines, sysusersNames, systemAccountNames, type AccountFiles } from '../compile/accounts.js';
import { chmodIn, copyDirWithinIn, existsIn, isDirIn, lchownIn, mkdirInRoot, readdirIn, readTextIn, removeInRoot, writeFileIn } from '../compile/rootfs.js';
import { UserError, type Diagnostic } from '../diagnostics.js';
import { locate } from '../manifest/schema.js';
import type { BuildContext, Step } from './step.js';

const ACCOUNT_FILES: [keyof AccountFiles, string, number][] = [
  ['passwd', '/etc/passwd', 0o644],
  ['group', '/etc/group', 0o644],
  ['shadow', '/etc/shadow', 0o640],
  ['gshadow', '/etc/gshadow', 0o640],
];

export function readAccounts(root: string): AccountFiles {
  const read = (p: string) => readTextIn(root, p) ?? '';
  return { passwd: read('/etc/passwd'), group: read('/etc/group'), shadow: read('/etc/shadow'), gshadow: read('/etc/gshadow') };
}

/** The account plan for the image as it is now: used by files[] to resolve owner names before users exist. */
export function accountPlan(ctx: BuildContext) {
  return planAccounts(ctx.manifest, readAccounts(ctx.root), ctx.epoch, existsIn(ctx.root, '/bin/bash'), previousImageOf(ctx)?.ids);
}

export const users: Step = {
  name: 'users and groups',
  tools: [],
  applies: (m) => (m.users?.length ?? 0) > 0 || (m.groups?.length ?? 0) > 0,
  async run(ctx) {
    const plan = accountPlan(ctx);
    ctx.accounts = plan;
    const shadowGid = plan.gidOf.get('shadow') ?? 0;
    // Replaced, not written through: a link planted at /etc/passwd must not lead anywhere.
    for (const [key, file, mode] of ACCOUNT_FILES) writeFileIn(ctx.root, file, plan.files[key], { uid: 0, gid: mode === 0o640 ? shadowGid : 0, mode });
    for (const u of plan.users) {
      if (!existsIn(ctx.root, u.home)) {
        mkdirInRoot(ctx.root, path.posix.dirname(u.home));
        mkdirInRoot(ctx.root, u.home, 0o700);
        copyDirWithinIn(ctx.root, '/etc/skel', u.home, u.uid, u.gid);
        lchownIn(ctx.root, u.home, u.uid, u.gid);
        chmodIn(ctx.root, u.home, 0o700);
      }
      if (u.sshKeys.length) {
        const ssh = `${u.home}/.ssh`;
        mkdirInRoot(ctx.root, ssh, 0o700);
        lchownIn(ctx.root, ssh, u.uid, u.gid);
        chmodIn(ctx.root, ssh, 0o700);
        writeFileIn(ctx.root, `${ssh}/authorized_keys`, u.sshKeys.join('\n') + '\n', { uid: u.uid, gid: u.gid, mode: 0o600 });
      }
    }
    return `${ctx.manifest.groups?.length ?? 0} groups, ${plan.users.length} users`;
  },
};

export const SYSUSERS_DIR = '/usr/lib/sysusers.d';
export const sysusersFile = (image: string) => `${SYSUSERS_DIR}/treecast-${image}.conf`;
export const systemSysusersFile = (image: string) => `${SYSUSERS_DIR}/treecast-${image}-system.conf`;

/** The accounts the manifest declares: users, groups, and the users' primary groups. */
function manifestNames(m: BuildContext['manifest']): { users: Set<string>; groups: Set<string> } {
  const users = new Set((m.users ?? []).map((u) => u.name));
  const groups = new Set([...(m.groups ?? []).map((g) => g.name), ...(m.users ?? []).map((u) => u.group ?? u.name)]);
  return { users, groups };
}

/**
 * Called by finalize, on the image's final /etc (after postprocess scripts):
 * refuses an account whose id moved since the parent commit of the ref, then
 * writes the sysusers.d files that let a host whose /etc diverged get every
 * account of the new image at boot (docs/accounts.md).
 */
export function accountsForUpgrades(ctx: BuildContext): string | undefined {
  if (!isDirIn(ctx.root, '/etc') || readTextIn(ctx.root, '/etc/passwd') === undefined) return undefined;
  const files = readAccounts(ctx.root);
  const prev = previousImageOf(ctx);
  if (prev) {
    const allowed = new Set(ctx.manifest.accounts?.['allow-id-change'] ?? []);
    const changes = idChanges(prev.ids, idsOf(files.passwd, files.group), allowed);
    if (changes.length) throw idChangeError(ctx, changes, prev.commit, packageChange(prev.packages, ctx.packages.map((p) => p.name)));
  }
  const mine = manifestNames(ctx.manifest);
  // systemd's own sysusers.d (basic.conf: root, nobody, tty, ...) already declares some: a second line for them is only a boot warning.
  const dir = SYSUSERS_DIR;
  const own = new Set([sysusersFile(ctx.manifest.name), systemSysusersFile(ctx.manifest.name)]);
  const provided = sysusersNames(
    readdirIn(ctx.root, dir)
      .filter((f) => f.endsWith('.conf') && !own.has(`${dir}/${f}`))
      .map((f) => readTextIn(ctx.root, `${dir}/${f}`) ?? ''),
  );
  const sys = systemAccountNames(files);
  const keep = (names: Set<string>, skip: Set<string>, also: Set<string>) => new Set([...names].filter((n) => !skip.has(n) && !also.has(n)));
  const written: string[] = [];
  const write = (file: string, lines: string[], what: string) => {
    if (!lines.length) {
      removeInRoot(ctx.root, file);
      return;
    }
    mkdirInRoot(ctx.root, dir);
    writeFileIn(ctx.root, file, `# ${what} of image ${ctx.manifest.name}, written by treecast: created at boot when missing from /etc (docs/accounts.md).\n${lines.join('\n')}\n`, { mode: 0o644 });
    written.push(`${file.slice(dir.length + 1)} ${lines.length} lines`);
  };
  write(sysusersFile(ctx.manifest.name), sysusersLines(files, mine.users, mine.groups), 'Users and groups of the manifest');
  write(
    systemSysusersFile(ctx.manifest.name),
    sysusersLines(files, keep(sys.users, provided.users, mine.users), keep(sys.groups, provided.groups, mine.groups)),
    'System accounts the packages created',
  );
  return written.length ? `sysusers.d: ${written.join(', ')}` : undefined;
}

function idChangeError(ctx: BuildContext, changes: IdChange[], parent: string, pkgs: { added: string[]; removed: string[] }): UserError {
  const m = ctx.manifest;
  const root = ctx.image.root;
  const diags: Diagnostic[] = changes.map((c) => {
    const id = c.kind === 'user' ? 'uid' : 'gid';
    const message = `${c.kind} "${c.name}" had ${id} ${c.old} in the previous commit ${parent.slice(0, 12)} of ${ctx.ref} and now has ${id} ${c.new}: files a host owns as ${c.old} would not be ${c.name}'s any more`;
    const hint = `keep ${id} ${c.old}, or, when the change is intended, list "${c.name}" under accounts: allow-id-change:`;
    const ui = (m.users ?? []).findIndex((u) => u.name === c.name || (c.kind === 'group' && (u.group ?? u.name) === c.name));
    const gi = (m.groups ?? []).findIndex((g) => g.name === c.name);
    if (c.kind === 'group' && gi >= 0) return { loc: locate(root, m.groups![gi]!.gid !== undefined ? ['groups', gi, 'gid'] : ['groups', gi, 'name']), path: `groups[${gi}]`, message, hint };
    if (ui >= 0) return { loc: locate(root, c.kind === 'user' && m.users![ui]!.uid !== undefined ? ['users', ui, 'uid'] : ['users', ui, 'name']), path: `users[${ui}]`, message, hint };
    const cause = pkgs.added.length || pkgs.removed.length ? `packages added: ${pkgs.added.join(', ') || 'none'}; removed: ${pkgs.removed.join(', ') || 'none'}` : 'the package set is unchanged (a newer package version or a postprocess script renumbered it)';
    return { message: `system ${message}; ${cause}`, hint: `pin it: create it with its old ${id} before the package does (a postprocess script, or groups: for a group), or list "${c.name}" under accounts: allow-id-change:` };
  });
  const summary = changes.map((c) => `${c.kind} "${c.name}" ${c.kind === 'user' ? 'uid' : 'gid'} ${c.old} -> ${c.new}`).join(', ');
  return new UserError(`account ids changed since the previous commit: ${summary}`, diags);
}
