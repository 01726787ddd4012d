import path from 'node:path';
import { planAccounts, type AccountFiles } from '../build/accounts.js';
import { chmodIn, copyDirWithinIn, existsIn, lchownIn, mkdirInRoot, readTextIn, writeFileIn } from '../build/rootfs.js';
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
  return planAccounts(ctx.manifest, readAccounts(ctx.root), ctx.epoch, existsIn(ctx.root, '/bin/bash'));
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
