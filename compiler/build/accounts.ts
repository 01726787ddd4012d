/**
 * Users and groups, planned as pure text edits of the image's own
 * /etc/passwd, group, shadow and gshadow — no useradd from the build host,
 * whose defaults and databases are not the image's.
 */
import { UserError } from '../diagnostics.js';
import type { ImageManifest } from '../manifest/types.js';

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

export function planAccounts(m: Pick<ImageManifest, 'users' | 'groups'>, current: AccountFiles, epoch: number, hasBash: boolean): AccountPlan {
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
  const upsertGroup = (name: string, gid?: number): number => {
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
    const id = gid ?? nextFree(usedGids);
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
    const uid = u.uid ?? nextFree(usedUids);
    usedUids.add(uid);
    const primary = u.group ?? u.name;
    const gid = group.some((r) => r[0] === primary) ? upsertGroup(primary) : upsertGroup(primary, usedGids.has(uid) ? undefined : uid);
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
