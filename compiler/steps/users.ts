import { chmodSync, chownSync, cpSync, existsSync, lchownSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { planAccounts, type AccountFiles } from '../build/accounts.js';
import { mkdirInRoot, resolveInRoot } from '../build/rootfs.js';
import type { BuildContext, Step } from './step.js';

const ACCOUNT_FILES: [keyof AccountFiles, string, number][] = [
  ['passwd', '/etc/passwd', 0o644],
  ['group', '/etc/group', 0o644],
  ['shadow', '/etc/shadow', 0o640],
  ['gshadow', '/etc/gshadow', 0o640],
];

export function readAccounts(root: string): AccountFiles {
  const read = (p: string) => {
    const host = resolveInRoot(root, p, true);
    return existsSync(host) ? readFileSync(host, 'utf8') : '';
  };
  return { passwd: read('/etc/passwd'), group: read('/etc/group'), shadow: read('/etc/shadow'), gshadow: read('/etc/gshadow') };
}

/** The account plan for the image as it is now: used by files[] to resolve owner names before users exist. */
export function accountPlan(ctx: BuildContext) {
  return planAccounts(ctx.manifest, readAccounts(ctx.root), ctx.epoch, existsSync(resolveInRoot(ctx.root, '/bin/bash', true)));
}

export const users: Step = {
  name: 'users and groups',
  tools: [],
  applies: (m) => (m.users?.length ?? 0) > 0 || (m.groups?.length ?? 0) > 0,
  async run(ctx) {
    const plan = accountPlan(ctx);
    ctx.accounts = plan;
    const shadowGid = plan.gidOf.get('shadow') ?? 0;
    mkdirInRoot(ctx.root, '/etc');
    for (const [key, file, mode] of ACCOUNT_FILES) {
      const host = resolveInRoot(ctx.root, file, true);
      writeFileSync(host, plan.files[key]);
      chownSync(host, 0, mode === 0o640 ? shadowGid : 0);
      chmodSync(host, mode);
    }
    for (const u of plan.users) {
      const home = resolveInRoot(ctx.root, u.home, true);
      if (!existsSync(home)) {
        mkdirInRoot(ctx.root, path.posix.dirname(u.home));
        mkdirSync(home);
        const skel = resolveInRoot(ctx.root, '/etc/skel', true);
        if (existsSync(skel)) cpSync(skel, home, { recursive: true, verbatimSymlinks: true });
        chownTree(home, u.uid, u.gid);
        chmodSync(home, 0o700);
      }
      if (u.sshKeys.length) {
        const ssh = path.join(home, '.ssh');
        mkdirSync(ssh, { recursive: true });
        chownSync(ssh, u.uid, u.gid);
        chmodSync(ssh, 0o700);
        const keys = path.join(ssh, 'authorized_keys');
        writeFileSync(keys, u.sshKeys.join('\n') + '\n');
        chownSync(keys, u.uid, u.gid);
        chmodSync(keys, 0o600);
      }
    }
    return `${ctx.manifest.groups?.length ?? 0} groups, ${plan.users.length} users`;
  },
};

function chownTree(dir: string, uid: number, gid: number): void {
  chownSync(dir, uid, gid);
  for (const e of readdirWithTypes(dir)) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) chownTree(p, uid, gid);
    else if (e.isSymbolicLink()) lchownSync(p, uid, gid);
    else chownSync(p, uid, gid);
  }
}
const readdirWithTypes = (d: string) => readdirSync(d, { withFileTypes: true });
