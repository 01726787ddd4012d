/**
 * Issue #14 "Real hosts": accounts that survive OSTree upgrades
 * (docs/accounts.md). The image's users, groups and system accounts are in
 * /usr/lib/sysusers.d, and the real systemd-sysusers re-creates them with
 * the same ids on a root whose /etc lost them; uids and gids stay put from
 * one build of a ref to the next, and a moved one fails the build at its
 * manifest line unless accounts: allow-id-change lists it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { idChanges, idsOf, packageChange } from '../compiler/compile/account-ids.js';
import { planAccounts, sysusersLines, sysusersNames } from '../compiler/compile/accounts.js';
import { startServe, stopServe, type ServeProcess } from './helpers/serve.js';
import { makeRepo, ostreeCat, requireTool, sh, shellTree, type BuiltImage, type Fixture } from './helpers/build-fixture.js';

const REF = 'acme/acct/x86_64/stable';
const HASH = '$6$treecast$fixturehashfixturehashfixturehash';

const manifest = (users: string, extra = '') => `name: acct
ref: ${REF}
base: { source: tree, path: trees/base }
groups:
  - { name: adm }
  - { name: ops }
  - { name: app, gid: 2000 }
users:
${users}outputs: { ostree: {} }
${extra}`;

const USERS = `  - { name: app, uid: 2000, group: app, groups: [ops], password-hash: "${HASH}" }
  - { name: alice, groups: [ops, adm], gecos: "Alice Example" }
  - { name: bob }
`;
// The same users in another order: without the previous commit's ids, bob would take alice's uid 1000.
const USERS_REORDERED = `  - { name: bob }
  - { name: alice, groups: [ops, adm], gecos: "Alice Example" }
  - { name: app, uid: 2000, group: app, groups: [ops], password-hash: "${HASH}" }
`;

// adm: a group of the base the manifest declares too (a tree base's groups must be declared to be used).
const BASE_GROUP = 'root:x:0:\nadm:x:4:\nwheel:x:10:\nshadow:x:42:\nsvc:x:999:\nnogroup:x:65534:\n';

const passwdRow = (text: string, name: string) => text.split('\n').find((l) => l.startsWith(`${name}:`));

describe('accounts: sysusers.d files and ids stable across builds', () => {
  let fx: Fixture;
  let first: BuiltImage;
  let second: BuiltImage;
  const cat = (rev: string, p: string) => ostreeCat(fx.ostreeRepo, rev, p);

  beforeAll(() => {
    for (const tool of ['ostree', 'systemd-sysusers', 'git', 'dpkg-query']) requireTool(tool);
    fx = makeRepo({ prefix: 'accounts', files: { ...shellTree('trees/base', { group: BASE_GROUP }), '.gitignore': '.treecast/\n', 'images/acct.yaml': manifest(USERS) } });
    first = fx.build()[0]!;
  });
  afterAll(() => fx?.cleanup());

  it('writes the manifest accounts and the system accounts, with their ids and memberships and no hash, to /usr/lib/sysusers.d', () => {
    const passwd = cat(first.commit, '/usr/etc/passwd');
    const group = cat(first.commit, '/usr/etc/group');
    const uid = (n: string) => passwdRow(passwd, n)!.split(':')[2];
    const gid = (n: string) => passwdRow(group, n)!.split(':')[2];
    expect([uid('app'), uid('alice'), uid('bob'), gid('ops'), gid('app'), gid('alice'), gid('bob')]).toEqual(['2000', '1000', '1001', '1000', '2000', '1001', '1002']);
    const conf = cat(first.commit, '/usr/lib/sysusers.d/treecast-acct.conf');
    expect(conf.split('\n').filter((l) => l && !l.startsWith('#'))).toEqual([
      'g adm 4',
      'g ops 1000',
      'g app 2000',
      'g alice 1001',
      'g bob 1002',
      'u app 2000:2000 - /home/app /bin/sh',
      'u alice 1000:1001 "Alice Example" /home/alice /bin/sh',
      'u bob 1001:1002 - /home/bob /bin/sh',
      'm alice adm',
      'm app ops',
      'm alice ops',
    ]);
    const system = cat(first.commit, '/usr/lib/sysusers.d/treecast-acct-system.conf');
    expect(system.split('\n').filter((l) => l && !l.startsWith('#'))).toEqual([
      'g root 0',
      'g wheel 10',
      'g shadow 42',
      'g svc 999',
      'g nogroup 65534',
      'u root 0:0 root /root /bin/sh',
      'u svc 999:999 "image-only service user" /nonexistent /usr/sbin/nologin',
      'u nobody 65534:65534 nobody /nonexistent /usr/sbin/nologin',
    ]);
    // The hash stays in the 0640 shadow file, never in the world-readable /usr.
    expect(conf + system).not.toContain(HASH);
    expect(cat(first.commit, '/usr/etc/shadow')).toContain(`app:${HASH}:`);
  });

  it('systemd-sysusers re-creates, with the same ids, the accounts a diverged /etc lost', () => {
    const dir = fs.mkdtempSync(path.join(path.dirname(fx.dir), 'host-'));
    sh('ostree', ['checkout', `--repo=${fx.ostreeRepo}`, '--force-copy', '--subpath=/usr/etc', first.commit, path.join(dir, 'etc')]);
    fs.mkdirSync(path.join(dir, 'usr/lib'), { recursive: true });
    sh('ostree', ['checkout', `--repo=${fx.ostreeRepo}`, '--force-copy', '--subpath=/usr/lib/sysusers.d', first.commit, path.join(dir, 'usr/lib/sysusers.d')]);
    const image = { passwd: fs.readFileSync(path.join(dir, 'etc/passwd'), 'utf8'), group: fs.readFileSync(path.join(dir, 'etc/group'), 'utf8') };
    // The host's /etc as an older image plus local edits left it: none of this image's own accounts, nor the package account svc.
    const lost = new Set(['app', 'alice', 'bob', 'ops', 'svc']);
    const strip = (file: string, members: boolean) => {
      const p = path.join(dir, 'etc', file);
      const lines = fs.readFileSync(p, 'utf8').split('\n').filter((l) => l && !lost.has(l.split(':')[0]!));
      const out = members ? lines.map((l) => l.replace(/^(adm:[^:]*:\d+:).*$/, '$1')) : lines;
      fs.writeFileSync(p, out.join('\n') + '\n');
    };
    strip('passwd', false);
    strip('shadow', false);
    strip('group', true);
    strip('gshadow', true);
    expect(passwdRow(fs.readFileSync(path.join(dir, 'etc/passwd'), 'utf8'), 'alice')).toBeUndefined();
    sh('systemd-sysusers', [`--root=${dir}`]);
    const after = { passwd: fs.readFileSync(path.join(dir, 'etc/passwd'), 'utf8'), group: fs.readFileSync(path.join(dir, 'etc/group'), 'utf8') };
    for (const name of ['app', 'alice', 'bob', 'svc']) expect(passwdRow(after.passwd, name), name).toBe(passwdRow(image.passwd, name));
    const groupIds = (text: string) => idsOf('', text).groups;
    for (const name of ['app', 'alice', 'bob', 'ops', 'svc']) expect(groupIds(after.group).get(name), name).toBe(groupIds(image.group).get(name));
    const members = (name: string) => (passwdRow(after.group, name)!.split(':')[3] ?? '').split(',').filter(Boolean).sort();
    expect(members('ops')).toEqual(['alice', 'app']);
    expect(members('adm')).toEqual(['alice']);
    // Re-created without the manifest's hash: locked until a password is set on the host.
    expect(passwdRow(fs.readFileSync(path.join(dir, 'etc/shadow'), 'utf8'), 'app')!.split(':')[1]).toMatch(/^!/);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('keeps every uid and gid when the users are listed in another order, then refuses a moved uid at its line unless allow-id-change lists it', () => {
    const ids = (rev: string) => idsOf(cat(rev, '/usr/etc/passwd'), cat(rev, '/usr/etc/group'));
    fx.write('images/acct.yaml', manifest(USERS_REORDERED));
    fx.commit('reorder users');
    second = fx.build()[0]!;
    expect(second.commit).not.toBe(first.commit);
    expect(ids(second.commit)).toEqual(ids(first.commit));

    const moved = USERS.replace('uid: 2000', 'uid: 2001');
    fx.write('images/acct.yaml', manifest(moved));
    fx.commit('move app');
    const r = fx.cli(['build']);
    expect(r.code, r.stderr).toBe(1);
    const text = manifest(moved).split('\n');
    const line = text.findIndex((l) => l.includes('uid: 2001')) + 1;
    const col = text[line - 1]!.indexOf('2001') + 1;
    expect(r.stderr).toContain(`images/acct.yaml:${line}:${col}`);
    expect(r.stderr).toMatch(/user "app" had uid 2000 .* now has uid 2001/);
    expect(r.stderr).toContain('allow-id-change');
    expect(sh('ostree', ['rev-parse', `--repo=${fx.ostreeRepo}`, REF]).trim()).toBe(second.commit);

    fx.write('images/acct.yaml', manifest(moved, 'accounts: { allow-id-change: [app] }\n'));
    fx.commit('move app, intended');
    const third = fx.build()[0]!;
    expect(ids(third.commit).users.get('app')).toBe(2001);
    expect(ids(third.commit).users.get('alice')).toBe(1000);
  });

  it('an upgrade keeps a diverged /etc/passwd but drops /etc/.updated, so systemd-sysusers.service (ConditionNeedsUpdate=|/etc) runs on the next boot', () => {
    const sysroot = path.join(path.dirname(fx.dir), 'sysroot');
    fs.mkdirSync(sysroot);
    sh('ostree', ['admin', 'init-fs', sysroot]);
    sh('ostree', ['admin', 'os-init', `--sysroot=${sysroot}`, 'treecast']);
    // Pulled one at a time: a deploy prunes commits no ref or deployment holds.
    const deploy = (c: string) => {
      sh('ostree', [`--repo=${sysroot}/ostree/repo`, 'pull-local', fx.ostreeRepo, c]);
      sh('ostree', ['admin', 'deploy', `--sysroot=${sysroot}`, '--os=treecast', c]);
    };
    deploy(first.commit);
    const deployed = (c: string) => path.join(sysroot, 'ostree/deploy/treecast/deploy', `${c}.0`);
    // The host as it runs: a local useradd, and systemd-update-done's stamp.
    fs.appendFileSync(path.join(deployed(first.commit), 'etc/passwd'), 'local:x:1500:1500::/home/local:/bin/sh\n');
    fs.writeFileSync(path.join(deployed(first.commit), 'etc/.updated'), 'TIMESTAMP_NSEC=0\n');
    deploy(second.commit);
    const next = deployed(second.commit);
    expect(fs.readFileSync(path.join(next, 'etc/passwd'), 'utf8')).toContain('local:x:1500:');
    expect(fs.existsSync(path.join(next, 'etc/.updated'))).toBe(false);
    expect(fs.readFileSync(path.join(next, 'usr/lib/sysusers.d/treecast-acct.conf'), 'utf8')).toContain('u alice 1000:1001');
    expect(fs.readFileSync('/usr/lib/systemd/system/systemd-sysusers.service', 'utf8')).toMatch(/^ConditionNeedsUpdate=\|?\/etc$/m);
  });

  it('refuses a system account the base renumbered, naming it, both ids and the package change', () => {
    fx.write('trees/base/etc/passwd', 'root:x:0:0:root:/root:/bin/sh\nsvc:x:998:999:image-only service user:/nonexistent:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n');
    fx.write('images/acct.yaml', manifest(USERS.replace('uid: 2000', 'uid: 2001')));
    fx.commit('svc renumbered by the base');
    const r = fx.cli(['build']);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/system user "svc" had uid 999 in the previous commit [0-9a-f]{12} of acme\/acct\/x86_64\/stable and now has uid 998\b.*; the package set is unchanged/);
  });
});

/**
 * A CI job starts from an empty cache: the parent of its build is known only
 * from the published tree (remote history). Its /usr/etc is fetched from there,
 * so the ids are kept and checked exactly as with a local parent.
 */
describe('account ids when the parent is only in the published tree (fresh cache, publish.url)', () => {
  let fx: Fixture;
  let server: ServeProcess;
  let published: BuiltImage;

  beforeAll(async () => {
    fx = makeRepo({ prefix: 'accounts-remote', files: { ...shellTree('trees/base', { group: BASE_GROUP }), 'images/acct.yaml': manifest(USERS) } });
    const pub = path.join(path.dirname(fx.dir), 'published');
    fs.mkdirSync(pub);
    server = await startServe(pub, path.join(path.dirname(fx.dir), 'access.log'));
    fx.write('treecast.yaml', `publish: { url: ${server.url} }\n`);
    fx.commit('publish.url');
    published = fx.build()[0]!;
    const r = fx.cli(['publish', '--dir', pub]);
    expect(r.code, r.stderr).toBe(0);
  }, 60_000);
  afterAll(async () => {
    await stopServe(server);
    fx?.cleanup();
  });

  const ids = (repo: string, rev: string) => idsOf(ostreeCat(repo, rev, '/usr/etc/passwd'), ostreeCat(repo, rev, '/usr/etc/group'));

  it('keeps the published ids (users reordered, no explicit uid) and refuses a moved uid at its line', () => {
    fx.write('images/acct.yaml', manifest(USERS_REORDERED));
    fx.commit('reorder users');
    const cache = fx.newCacheDir();
    const r = fx.cli(['build', '--json'], { cacheDir: cache });
    expect(r.code, r.stderr).toBe(0);
    const built = (JSON.parse(r.stdout) as { images: (BuiltImage & { parent?: string })[] }).images[0]!;
    expect(built.parent).toBe(published.commit);
    expect(ids(path.join(cache, 'repo'), built.commit)).toEqual(ids(fx.ostreeRepo, published.commit));

    const moved = USERS.replace('uid: 2000', 'uid: 2001');
    fx.write('images/acct.yaml', manifest(moved));
    fx.commit('move app');
    const m = fx.cli(['build'], { cacheDir: fx.newCacheDir() });
    expect(m.code, m.stderr).toBe(1);
    const text = manifest(moved).split('\n');
    const line = text.findIndex((l) => l.includes('uid: 2001')) + 1;
    expect(m.stderr).toContain(`images/acct.yaml:${line}:`);
    expect(m.stderr).toMatch(/user "app" had uid 2000 .* now has uid 2001/);
  }, 60_000);
});

describe('account ids: pure functions', () => {
  const prev = idsOf('root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\nsvc:x:999:999::/:/bin/false\n', 'root:x:0:\nalice:x:1000:\nops:x:1001:alice\n');

  it('idChanges: moved ids only, in both tables, minus the allowed names; new and removed names are no change', () => {
    const next = idsOf('root:x:0:0::/root:/bin/sh\nalice:x:1002:1000::/home/alice:/bin/sh\nbob:x:1000:1000::/home/bob:/bin/sh\n', 'root:x:0:\nalice:x:1000:\nops:x:1003:alice\n');
    expect(idChanges(prev, next)).toEqual([
      { kind: 'user', name: 'alice', old: 1000, new: 1002 },
      { kind: 'group', name: 'ops', old: 1001, new: 1003 },
    ]);
    expect(idChanges(prev, next, new Set(['alice']))).toEqual([{ kind: 'group', name: 'ops', old: 1001, new: 1003 }]);
    expect(idChanges(prev, prev)).toEqual([]);
  });

  it('packageChange lists added and removed names, sorted', () => {
    expect(packageChange(['a', 'b', 'c'], ['c', 'e', 'd', 'a'])).toEqual({ added: ['d', 'e'], removed: ['b'] });
  });

  it('planAccounts reuses the previous ids of users and groups without explicit ones, when still free', () => {
    const base = { passwd: 'root:x:0:0:root:/root:/bin/sh\n', group: 'root:x:0:\nwheel:x:10:\n', shadow: '', gshadow: '' };
    const m = { users: [{ name: 'bob' }, { name: 'alice' }], groups: [{ name: 'ops' }] };
    const fresh = planAccounts(m, base, 0, false);
    expect([fresh.uidOf.get('bob'), fresh.uidOf.get('alice'), fresh.gidOf.get('ops')]).toEqual([1000, 1001, 1000]);
    const kept = planAccounts(m, base, 0, false, idsOf('bob:x:1001:1003::/:/bin/sh\nalice:x:1000:1002::/:/bin/sh\n', 'ops:x:1004:\nalice:x:1002:\nbob:x:1003:\n'));
    expect([kept.uidOf.get('bob'), kept.uidOf.get('alice'), kept.gidOf.get('ops'), kept.gidOf.get('bob'), kept.gidOf.get('alice')]).toEqual([1001, 1000, 1004, 1003, 1002]);
    // An explicit uid wins over the previous one; a previous id now taken falls back to the next free one.
    const taken = planAccounts({ users: [{ name: 'alice', uid: 1500 }, { name: 'bob' }] }, base, 0, false, idsOf('bob:x:1500:1500::/:/bin/sh\n', ''));
    expect([taken.uidOf.get('alice'), taken.uidOf.get('bob')]).toEqual([1500, 1000]);
  });

  it('sysusersLines quotes blanks, doubles %, writes - for empty fields; sysusersNames reads u and g lines', () => {
    const lines = sysusersLines({ passwd: 'x:x:5:6:50% "the" one::/bin/sh\n', group: 'x:x:6:\nadm:x:4:x\n' }, new Set(['x']), new Set(['x']));
    expect(lines).toEqual(['g x 6', 'u x 5:6 "50%% \\"the\\" one" - /bin/sh', 'm x adm']);
    expect(sysusersNames(['# c\ng adm 4\nu root 0 "root" /root\nm root adm\n'])).toEqual({ users: new Set(['root']), groups: new Set(['adm', 'root']) });
  });
});
