/**
 * Users and groups, planned as pure text edits of the image's own
 * /etc/passwd, group, shadow and gshadow — no useradd from the build host,
 * whose defaults and databases are not the image's.
 */
import { UserError } from '../diagnostics.js';
import type { ImageManifest } from '../manifest/types.js';
import type { AccountIds } from './account-ids.js';

export interface AccountFiles {
  passwd: string;
  group: string;
  shadow: string;
  gshadow: string;
}

export interface PlannedUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
  shell: string;
  sshKeys: string[];
}

export interface AccountPlan {
  files: AccountFiles;
  users: PlannedUser[];
  /** name -> id, for resolving owner/group names in files[] */
  uidOf: Map<string, number>;
  gidOf: Map<string, number>;
}

type Row = string[];
const rows = (text: string): Row[] =>
  text
    .split('\n')
    .filter((l) => l.trim() && !l.startsWith('#'))
    .map((l) => l.split(':'));
const unrows = (r: Row[]) => r.map((x) => x.join(':')).join('\n') + (r.length ? '\n' : '');

/** Days since the epoch for shadow's "last change" field, from SOURCE_DATE_EPOCH. */
const days = (epoch: number) => String(Math.floor(epoch / 86400));

/**
 * `previous`: the parent commit's ids. A user or group the manifest gives no
 * id keeps the one it had there (when still free), so a rebuild never
 * renumbers it — like rpm-ostree's previous passwd.
 */
export function planAccounts(m: Pick<ImageManifest, 'users' | 'groups'>, current: AccountFiles, epoch: number, hasBash: boolean, previous?: AccountIds): AccountPlan {
  const passwd = rows(current.passwd);
  const group = rows(current.group);
  const shadow = rows(current.shadow);
  const gshadow = rows(current.gshadow);
  const usedUids = new Set(passwd.map((r) => Number(r[2])));
  const usedGids = new Set(group.map((r) => Number(r[2])));
  const nextFree = (used: Set<number>, preferred?: number) => {
    if (preferred !== undefined && !used.has(preferred)) return preferred;
    let id = 1000;
    while (used.has(id)) id++;
    return id;
  };
  const upsertGroup = (name: string, gid?: number, preferred?: number): number => {
    const existing = group.find((r) => r[0] === name);
    if (existing) {
      if (gid !== undefined && Number(existing[2]) !== gid) {
        // Renumbering onto a gid another group holds would give two groups one gid.
        const holder = group.find((r) => r !== existing && Number(r[2]) === gid);
        if (holder) throw new UserError(`gid ${gid} for group "${name}" is already used in the image by "${holder[0]}"`);
        usedGids.delete(Number(existing[2]));
        existing[2] = String(gid);
        usedGids.add(gid);
      }
      return Number(existing[2]);
    }
    const id = gid ?? nextFree(usedGids, previous?.groups.get(name) ?? preferred);
    if (gid !== undefined && usedGids.has(gid)) throw new UserError(`gid ${gid} for group "${name}" is already used in the image by "${group.find((r) => Number(r[2]) === gid)?.[0]}"`);
    usedGids.add(id);
    group.push([name, 'x', String(id), '']);
    gshadow.push([name, '!', '', '']);
    return id;
  };

  for (const g of m.groups ?? []) upsertGroup(g.name, g.gid);

  const users: PlannedUser[] = [];
  for (const u of m.users ?? []) {
    if (passwd.some((r) => r[0] === u.name)) throw new UserError(`user "${u.name}" already exists in the base image`);
    if (u.uid !== undefined && usedUids.has(u.uid)) throw new UserError(`uid ${u.uid} for user "${u.name}" is already used in the image by "${passwd.find((r) => Number(r[2]) === u.uid)?.[0]}"`);
    const uid = u.uid ?? nextFree(usedUids, previous?.users.get(u.name));
    usedUids.add(uid);
    const primary = u.group ?? u.name;
    const gid = group.some((r) => r[0] === primary) ? upsertGroup(primary) : upsertGroup(primary, undefined, uid);
    const home = u.home ?? `/home/${u.name}`;
    const shell = u.shell ?? (hasBash ? '/bin/bash' : '/bin/sh');
    passwd.push([u.name, 'x', String(uid), String(gid), u.gecos ?? '', home, shell]);
    shadow.push([u.name, u['password-hash'] ?? '!', days(epoch), '0', '99999', '7', '', '', '']);
    for (const extra of u.groups ?? []) {
      const row = group.find((r) => r[0] === extra);
      if (!row) throw new UserError(`user "${u.name}": group "${extra}" does not exist in the image`);
      const members = row[3] ? row[3].split(',') : [];
      if (!members.includes(u.name)) row[3] = [...members, u.name].join(',');
      const srow = gshadow.find((r) => r[0] === extra);
      if (srow) {
        const smembers = srow[3] ? srow[3].split(',') : [];
        if (!smembers.includes(u.name)) srow[3] = [...smembers, u.name].join(',');
      }
    }
    users.push({ name: u.name, uid, gid, home, shell, sshKeys: u['ssh-authorized-keys'] ?? [] });
  }
  return {
    files: { passwd: unrows(passwd), group: unrows(group), shadow: unrows(shadow), gshadow: unrows(gshadow) },
    users,
    uidOf: new Map(passwd.map((r) => [r[0]!, Number(r[2])])),
    gidOf: new Map(group.map((r) => [r[0]!, Number(r[2])])),
  };
}

/**
 * One sysusers.d field: `-` for empty, quoted when it holds blanks or quotes,
 * `%` doubled (sysusers expands specifiers in every field).
 */
function sysusersField(value: string): string {
  if (value === '') return '-';
  const v = value.replace(/%/g, '%%');
  return /[\s"'\\]/.test(v) ? `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"` : v;
}

/**
 * systemd-sysusers lines for the named accounts of the image as its
 * passwd/group files now stand: `g` for each group, `u name uid:gid` for each
 * user (its primary group by number, so it must come after the `g` lines),
 * `m` for each supplementary membership among them. No password field
 * exists in the format, so no hash can leak into the world-readable /usr.
 */
export function sysusersLines(files: Pick<AccountFiles, 'passwd' | 'group'>, userNames: ReadonlySet<string>, groupNames: ReadonlySet<string>): string[] {
  const passwd = rows(files.passwd).filter((r) => userNames.has(r[0]!));
  const group = rows(files.group).filter((r) => groupNames.has(r[0]!));
  const out: string[] = [];
  for (const g of group) out.push(`g ${g[0]} ${g[2]}`);
  for (const u of passwd) out.push(`u ${u[0]} ${u[2]}:${u[3]} ${sysusersField(u[4] ?? '')} ${sysusersField(u[5] ?? '')} ${sysusersField(u[6] ?? '')}`);
  // Memberships of these users in any group, their own or the base's (wheel, sudo): sysusers reads all files before it writes.
  for (const g of rows(files.group)) for (const member of (g[3] ?? '').split(',').filter(Boolean)) if (userNames.has(member)) out.push(`m ${member} ${g[0]}`);
  return out;
}

/** Users and groups in sysusers.d text (the `u`/`g` lines of every file): names systemd itself already provides. */
export function sysusersNames(confs: readonly string[]): { users: Set<string>; groups: Set<string> } {
  const users = new Set<string>();
  const groups = new Set<string>();
  for (const line of confs.flatMap((c) => c.split('\n'))) {
    const [type, name] = line.trim().split(/\s+/);
    if (type === 'u' && name) {
      users.add(name);
      groups.add(name); // `u` creates its like-named group too
    } else if (type === 'g' && name) groups.add(name);
  }
  return { users, groups };
}

/** Accounts packages own: ids below 1000 (Debian's system range) and nobody/nogroup. */
export const isSystemId = (id: number) => id < 1000 || id === 65534;

/** Names in passwd/group text whose id is a system one. */
export function systemAccountNames(files: Pick<AccountFiles, 'passwd' | 'group'>): { users: Set<string>; groups: Set<string> } {
  const pick = (text: string) => new Set(rows(text).filter((r) => /^\d+$/.test(r[2] ?? '') && isSystemId(Number(r[2]))).map((r) => r[0]!));
  return { users: pick(files.passwd), groups: pick(files.group) };
}
