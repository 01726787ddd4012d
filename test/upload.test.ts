/**
 * `treecast publish --to DEST`: the publish tree uploaded with real rsync, in
 * the order of compiler/publish/upload.ts, to a directory served by the real
 * `treecast serve` (compiler/serve) while real ostree clients pull from it.
 *
 *  - unit: DEST parsing (a DEST that looks like an option is refused), the
 *    argv of every pass for a local and an SSH destination (sshd is not
 *    available here: the SSH case is checked as argv only), --stats parsing
 *  - filters: each pass's argv run by real rsync with --dry-run over a tree
 *    that has a file in every place, listing what each pass would carry
 *  - end to end: v1 published and uploaded to a fresh directory (phase 1
 *    creates repo/config there), then v2 and v3 uploaded slowly
 *    (TREECAST_UPLOAD_BWLIMIT) while clients pull in a loop: every pull
 *    succeeds, the client ends on v3, `ostree fsck` is clean, the uploaded
 *    tree equals the local one, retention's deletions reach the destination
 *  - errors: DEST starting with '-' (exit 2), a missing local parent (exit 1)
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { downloadPlan, parseDestination, parseRsyncStats, privateDestination, uploadPlan } from '../compiler/publish/upload.js';
import { startServer, type RunningServer } from '../compiler/serve/index.js';
import { HOST, HOST_REF, NETBOOT, NETBOOT_REF, PublishFixture, clientRepo, exec, fsck, must, revParse, type BuiltImage, type SigningKey } from './helpers/publish-fixture.js';

const PHASES = ['objects', 'content', 'refs', 'summary', 'links', 'index', 'delete'];

/** The argument after which the source and destination come. */
function ends(argv: string[]): string[] {
  return argv.slice(argv.indexOf('--'));
}

describe('upload plan (argv)', () => {
  it('parses destinations in rsync syntax and refuses one that rsync would read as an option', () => {
    expect(parseDestination('out/pub', '/srv')).toEqual({ kind: 'local', path: '/srv/out/pub' });
    expect(parseDestination('./a:b', '/srv')).toEqual({ kind: 'local', path: '/srv/a:b' });
    expect(parseDestination('/x/y:z', '/srv')).toEqual({ kind: 'local', path: '/x/y:z' });
    expect(parseDestination('deploy@images.example.com:/srv/treecast')).toEqual({ kind: 'ssh', spec: 'deploy@images.example.com:/srv/treecast' });
    expect(parseDestination('mirror:pub')).toEqual({ kind: 'ssh', spec: 'mirror:pub' });
    for (const bad of ['-e', '--rsh=sh -c id', '-', '--delete']) expect(() => parseDestination(bad)).toThrow(/may not start with '-'/);
    expect(() => parseDestination('rsync://host/mod')).toThrow(/daemon/);
    expect(() => parseDestination('host::mod')).toThrow(/daemon/);
    expect(() => parseDestination(':path')).toThrow(/\[user@\]host:path/);
    expect(() => parseDestination('')).toThrow(/needs a destination/);
  });

  it('puts the private tree beside DEST, never inside it, and refuses a DEST with no parent', () => {
    expect(privateDestination({ kind: 'local', path: '/srv/treecast/public' })).toEqual({ kind: 'local', path: '/srv/treecast/private' });
    expect(privateDestination({ kind: 'ssh', spec: 'deploy@host:/srv/treecast/public/' })).toEqual({ kind: 'ssh', spec: 'deploy@host:/srv/treecast/private' });
    expect(privateDestination({ kind: 'ssh', spec: 'host:/public' })).toEqual({ kind: 'ssh', spec: 'host:/private' });
    expect(privateDestination({ kind: 'ssh', spec: 'host:www/public' })).toEqual({ kind: 'ssh', spec: 'host:www/private' });
    expect(privateDestination({ kind: 'ssh', spec: 'host:public' })).toEqual({ kind: 'ssh', spec: 'host:private' });
    for (const home of ['host:', 'host:.', 'host:~', 'host:/']) expect(() => privateDestination({ kind: 'ssh', spec: home })).toThrow(/names no directory with a parent/);
  });

  it('orders the passes: content nothing points at, refs, the summary pair, links, index, deletes last', () => {
    const plan = uploadPlan({ source: '/p/public', dest: { kind: 'local', path: '/srv/www' } });
    expect(plan.map((p) => p.name)).toEqual(PHASES);
    const by = Object.fromEntries(plan.map((p) => [p.name, p.argv]));
    for (const p of plan) {
      // Source and destination only after `--`, the trailing slashes copy the contents.
      expect(ends(p.argv)).toEqual(['--', '/p/public/', '/srv/www/']);
      expect(p.argv.slice(0, 5)).toEqual(['-rlt', '--perms', '--chmod=D755,F644', '--safe-links', '--stats']);
      // Dot names (lock, staging dirs, temp files) are never sent, and everything not included is excluded.
      expect(p.argv).toContain('--exclude=.*');
      expect(p.argv[p.argv.indexOf('--') - 1]).toBe('--exclude=*');
      expect(p.argv).not.toContain('-e');
    }
    expect(by.objects).toContain('--ignore-existing');
    expect(by.objects).toContain('--exclude=/repo/objects/*/*.commitmeta');
    expect(by.objects!.indexOf('--exclude=/repo/objects/*/*.commitmeta')).toBeLessThan(by.objects!.indexOf('--include=/repo/objects/***'));
    expect(by.content).toContain('--include=/repo/objects/*/*.commitmeta');
    expect(by.content).toContain('--include=/repo/config');
    expect(by.content!.indexOf('--exclude=/images/*/latest')).toBeLessThan(by.content!.indexOf('--include=/images/*/*/***'));
    expect(by.refs).toContain('--include=/repo/refs/***');
    expect(by.summary).toEqual(expect.arrayContaining(['--delay-updates', '--include=/repo/summary', '--include=/repo/summary.sig']));
    expect(by.links).toEqual(expect.arrayContaining(['--include=/images/*/latest', '--include=/boot/***', '--include=/kickstart/***']));
    expect(by.index).toEqual(expect.arrayContaining(['--include=/index.json', '--include=/index.html']));
    expect(by.content).toContain('--include=/repo/delta-indexes/***');
    expect(by.delete).toEqual(expect.arrayContaining(['--existing', '--ignore-existing', '--delete', '--include=/images/***', '--include=/repo/refs/mirrors/***', '--include=/repo/objects/***', '--include=/repo/deltas/***', '--include=/repo/delta-indexes/***']));
    for (const p of plan.slice(0, -1)) expect(p.argv.some((a) => a.startsWith('--delete'))).toBe(false);
  });

  it('uses ssh for [user@]host:path, with progress and a bandwidth limit when asked', () => {
    const dest = parseDestination('deploy@images.example.com:/srv/treecast');
    const plan = uploadPlan({ source: '/p/public/', dest, rsh: 'ssh', bwlimit: 800, progress: true });
    for (const p of plan) {
      expect(ends(p.argv)).toEqual(['--', '/p/public/', 'deploy@images.example.com:/srv/treecast/']);
      const e = p.argv.indexOf('-e');
      expect(p.argv[e + 1]).toBe('ssh');
      expect(e).toBeLessThan(p.argv.indexOf('--'));
      expect(p.argv).toEqual(expect.arrayContaining(['--bwlimit=800', '--info=progress2']));
    }
    // `host:` is the login's home directory: no slash appended (that would be the root).
    const home = uploadPlan({ source: '/p', dest: { kind: 'ssh', spec: 'mirror:' } });
    expect(ends(home[0]!.argv)).toEqual(['--', '/p/', 'mirror:']);
    // Without rsh, rsync's own RSYNC_RSH (or its default) is left in charge.
    expect(uploadPlan({ source: '/p', dest }).every((p) => !p.argv.includes('-e'))).toBe(true);
  });

  it('brings DEST down in the reverse order: pointers and content (mirrored, --delete), then the objects they name (--ignore-existing, never deleted)', () => {
    const plan = downloadPlan({ source: '/p/public', dest: { kind: 'ssh', spec: 'deploy@images.example.com:/srv/treecast' }, rsh: 'ssh' });
    expect(plan.map((p) => p.name)).toEqual(['pointers', 'objects']);
    for (const p of plan) {
      // DEST is the source of this copy; the local publish dir the destination.
      expect(ends(p.argv)).toEqual(['--', 'deploy@images.example.com:/srv/treecast/', '/p/public/']);
      expect(p.argv).toEqual(expect.arrayContaining(['-e', 'ssh', '--exclude=.*']));
      expect(p.argv[p.argv.indexOf('--') - 1]).toBe('--exclude=*');
    }
    const [pointers, objects] = plan.map((p) => p.argv);
    expect(pointers).toEqual(expect.arrayContaining(['--delete', '--include=/repo/refs/***', '--include=/repo/summary', '--include=/repo/objects/*/*.commitmeta', '--include=/images/***', '--include=/index.json']));
    expect(pointers).not.toContain('--include=/repo/objects/***');
    expect(objects).toEqual(expect.arrayContaining(['--ignore-existing', '--include=/repo/objects/***']));
    expect(objects!.some((a) => a.startsWith('--delete'))).toBe(false);
  });

  it('reads the figures of rsync --stats', () => {
    const out = [
      'Number of files: 1,204 (reg: 1,100, dir: 103, link: 1)',
      'Number of created files: 12',
      'Number of deleted files: 7',
      'Number of regular files transferred: 1,034',
      'Total file size: 9,876,543 bytes',
      'Total transferred file size: 4,194,304 bytes',
    ].join('\n');
    expect(parseRsyncStats(out)).toEqual({ files: 1204, transferred: 1034, bytes: 4194304, deleted: 7 });
  });
});

/** Every entry below dir (relative path -> "d", "l:<target>" or "f:<sha256>"), minus what the upload never carries. */
function treeState(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const skip = (rel: string) => path.basename(rel).startsWith('.') || /\.old-\d+-\d+$/.test(rel) || /^repo\/(tmp|state|extensions)(\/|$)/.test(rel);
  const visit = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      const rel = path.relative(dir, p);
      if (skip(rel)) continue;
      if (e.isSymbolicLink()) out.set(rel, `l:${fs.readlinkSync(p)}`);
      else if (e.isDirectory()) {
        out.set(rel, 'd');
        visit(p);
      } else out.set(rel, `f:${createHash('sha256').update(fs.readFileSync(p)).digest('hex')}`);
    }
  };
  visit(dir);
  return out;
}

function expectSameTree(local: string, uploaded: string): void {
  const a = treeState(local);
  const b = treeState(uploaded);
  const missing = [...a.keys()].filter((k) => b.get(k) !== a.get(k));
  const extra = [...b.keys()].filter((k) => !a.has(k));
  expect({ missing, extra }).toEqual({ missing: [], extra: [] });
  expect(b.size).toBe(a.size);
}

describe('upload plan (filters, real rsync --dry-run)', () => {
  let root: string;
  beforeAll(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'treecast-upload-filters-'));
  });
  afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

  it('each pass carries exactly its part of the tree, and the passes together carry all of it', async () => {
    const src = path.join(root, 'public');
    const files = [
      'repo/config',
      'repo/objects/ab/cdef.commit',
      'repo/objects/ab/cdef.commitmeta',
      'repo/objects/12/3456.filez',
      'repo/objects/12/7890.dirtree',
      'repo/deltas/xy/zzz-www/superblock',
      'repo/deltas/xy/zzz-www/0',
      'repo/delta-indexes/3N/SyPb21KONEYIkKE45Q+adBf0LYcSMbW1lj+QeHtuQ.index',
      'repo/refs/heads/host/x86_64/stable',
      'repo/summary',
      'repo/summary.sig',
      'images/host/1.0.1/rootfs.squashfs',
      'images/host/1.0.1/SHA256SUMS',
      'images/host/1.0.2/MANIFEST.json',
      'keys/treecast.asc',
      'boot/netboot.ipxe',
      'kickstart/host.ks',
      'index.json',
      'index.html',
    ];
    const never = ['.treecast-publish.lock', 'images/host/.staging-1.0.3-abc/rootfs.squashfs', 'images/host/1.0.2.old-123-456/MANIFEST.json', 'kickstart/.host.ks.tmp-99', 'repo/tmp/cache/x', 'repo/state/abc.commitpartial', 'repo/.lock', 'repo/extensions/e'];
    for (const f of [...files, ...never]) {
      fs.mkdirSync(path.dirname(path.join(src, f)), { recursive: true });
      fs.writeFileSync(path.join(src, f), f);
    }
    fs.symlinkSync('1.0.2', path.join(src, 'images/host/latest'));
    const dest = path.join(root, 'dest');
    const carried: Record<string, string[]> = {};
    for (const p of uploadPlan({ source: src, dest: { kind: 'local', path: dest } })) {
      if (p.name === 'delete') continue; // only deletes; checked end to end below
      const at = p.argv.indexOf('--');
      // %n: the name of each file or link the pass would send (directories end in '/').
      const r = await must('rsync', [...p.argv.slice(0, at), '--dry-run', '--out-format=%n', ...p.argv.slice(at)]);
      carried[p.name] = r.stdout
        .split('\n')
        .filter((l) => l && !l.endsWith('/') && !/^(Number|Total|Literal|Matched|File list|sent|total)\b/.test(l) && l.trim() !== '')
        .sort();
    }
    expect(carried).toEqual({
      objects: ['repo/objects/12/3456.filez', 'repo/objects/12/7890.dirtree', 'repo/objects/ab/cdef.commit'],
      content: [
        'images/host/1.0.1/SHA256SUMS',
        'images/host/1.0.1/rootfs.squashfs',
        'images/host/1.0.2/MANIFEST.json',
        'keys/treecast.asc',
        'repo/config',
        'repo/delta-indexes/3N/SyPb21KONEYIkKE45Q+adBf0LYcSMbW1lj+QeHtuQ.index',
        'repo/deltas/xy/zzz-www/0',
        'repo/deltas/xy/zzz-www/superblock',
        'repo/objects/ab/cdef.commitmeta',
      ],
      refs: ['repo/refs/heads/host/x86_64/stable'],
      summary: ['repo/summary', 'repo/summary.sig'],
      links: ['boot/netboot.ipxe', 'images/host/latest', 'kickstart/host.ks'],
      index: ['index.html', 'index.json'],
    });
    expect(Object.values(carried).flat().sort()).toEqual([...files, 'images/host/latest'].sort());
  });
});

describe('publish --to: upload while clients pull (real rsync, ostree, treecast serve)', () => {
  let f: PublishFixture;
  let server: RunningServer;
  let pub: string;
  let served: string;
  let key: SigningKey;
  const builds: Record<string, BuiltImage>[] = [];
  const figures = { pulls: 0, failed: 0, summaryVerifyPulls: 0, summaryVerifyFailed: 0 };

  beforeAll(async () => {
    f = await PublishFixture.create('upload', { keep: 2 });
    pub = f.dir('public');
    // The destination does not exist yet: the upload creates it (its parent exists).
    served = path.join(f.root, 'www', 'served');
    fs.mkdirSync(path.dirname(served));
    server = await startServer({ dir: path.dirname(served), host: '127.0.0.1', port: 0, log: () => {} });
    f.setConfig({ url: `${server.url}/served`, keep: 2 });
    await f.commit('publish at the test server');
    key = await f.keygen();
    builds.push(await f.build());
  });

  afterAll(async () => {
    await server?.close();
    await f?.cleanup();
    console.info(`upload figures: ${JSON.stringify(figures)}`);
  });

  const repoUrl = () => `${server.url}/served/repo`;

  it('uploads v1 to a fresh directory; phase 1 creates repo/config there; a client pulls it', async () => {
    const r = await f.publish(pub, { key, extra: ['--to', served] });
    expect(r.code, r.stderr).toBe(0);
    for (const [i, name] of PHASES.entries()) expect(r.stderr).toContain(`upload ${i + 1}/${PHASES.length} ${name}:`);
    const out = JSON.parse(r.stdout) as { upload: { dest: string; phases: { name: string; transferred: number; bytes: number }[] } };
    expect(out.upload.dest).toBe(served);
    expect(out.upload.phases.map((p) => p.name)).toEqual(PHASES);
    expect(out.upload.phases[0]!.transferred).toBeGreaterThan(0);
    expect(fs.readFileSync(path.join(served, 'repo/config'), 'utf8')).toMatch(/mode=archive/);
    expectSameTree(pub, served);
    const client = await clientRepo(f.dir('client-v1'));
    await must('ostree', [`--repo=${client}`, 'remote', 'add', `--gpg-import=${key.publicKeyFile}`, '--set=gpg-verify=true', '--set=gpg-verify-summary=true', 'origin', repoUrl()]);
    await must('ostree', [`--repo=${client}`, 'pull', 'origin', HOST_REF, NETBOOT_REF]);
    expect(await revParse(client, `origin:${HOST_REF}`)).toBe(builds[0]![HOST]!.commit);
    // A second upload with nothing new sends no object again.
    const again = await f.publish(pub, { key, extra: ['--to', served] });
    expect(again.code, again.stderr).toBe(0);
    const phases = (JSON.parse(again.stdout) as typeof out).upload.phases;
    expect(phases.find((p) => p.name === 'objects')!.transferred).toBe(0);
  });

  it('uploads v2 and v3 while clients pull in a loop: no pull fails, the client ends on v3, fsck clean, trees equal', async () => {
    // A persistent client (an upgrading host; commits verified) and, each
    // round, a fresh one (a new host fetching everything). Summary signatures
    // are checked by a third client, counted separately: see the last assertion.
    const host = await clientRepo(f.dir('client-loop'));
    await must('ostree', [`--repo=${host}`, 'remote', 'add', `--gpg-import=${key.publicKeyFile}`, '--set=gpg-verify=true', '--set=gpg-verify-summary=false', 'origin', repoUrl()]);
    const strict = await clientRepo(f.dir('client-strict'));
    await must('ostree', [`--repo=${strict}`, 'remote', 'add', `--gpg-import=${key.publicKeyFile}`, '--set=gpg-verify=true', '--set=gpg-verify-summary=true', 'origin', repoUrl()]);
    const failures: string[] = [];
    const summaryFailures: string[] = [];
    const seen = new Set<string>();
    let uploading = true;
    const loop = (async () => {
      for (let round = 0; uploading; round++) {
        const fresh = await clientRepo(path.join(f.root, 'client-fresh'));
        await must('ostree', [`--repo=${fresh}`, 'remote', 'add', `--gpg-import=${key.publicKeyFile}`, '--set=gpg-verify=true', '--set=gpg-verify-summary=false', 'origin', repoUrl()]);
        for (const repo of [host, fresh]) {
          const r = await exec('ostree', [`--repo=${repo}`, 'pull', 'origin', HOST_REF, NETBOOT_REF]);
          figures.pulls++;
          if (r.code !== 0) {
            figures.failed++;
            failures.push(`round ${round} ${repo === host ? 'host' : 'fresh'}: ${r.stderr.trim()}`);
            console.info(`pull failed: ${failures[failures.length - 1]}`);
          } else seen.add((await revParse(repo, `origin:${HOST_REF}`))!);
        }
        const s = await exec('ostree', [`--repo=${strict}`, 'pull', 'origin', HOST_REF, NETBOOT_REF]);
        figures.summaryVerifyPulls++;
        if (s.code !== 0) {
          figures.summaryVerifyFailed++;
          summaryFailures.push(s.stderr.trim());
        }
      }
    })();
    try {
      for (const v of [2, 3]) {
        // A new incompressible blob: megabytes of new objects, squashfs and tarball bytes to upload.
        fs.writeFileSync(path.join(f.spec, 'tree/usr/share/treecast-test/blob.bin'), randomBytes(3 * 1024 * 1024));
        f.editTree('etc/motd', `treecast fixture v${v}\n`);
        await f.commit(`v${v}`);
        builds.push(await f.build());
        // Slow enough (KiB/s per rsync pass) that many pulls run during each pass.
        const r = await f.publish(pub, { key, extra: ['--to', served], run: { env: { TREECAST_UPLOAD_BWLIMIT: '3000' }, timeoutMs: 300_000 } });
        expect(r.code, r.stderr).toBe(0);
      }
    } finally {
      uploading = false;
      await loop;
    }
    console.info(`pulls during the v2 and v3 uploads: ${figures.pulls} (${figures.failed} failed); summary-verifying pulls: ${figures.summaryVerifyPulls} (${figures.summaryVerifyFailed} failed)`);
    expect(failures).toEqual([]);
    expect(figures.pulls).toBeGreaterThanOrEqual(10);
    const v3 = builds[2]!;
    // The loop ran while the versions changed under it: v2 is what it pulls
    // during the whole v3 build and upload (v3 may land after its last round).
    expect(seen.has(builds[1]![HOST]!.commit)).toBe(true);
    // After the upload, the host client gets v3.
    await must('ostree', [`--repo=${host}`, 'pull', 'origin', HOST_REF, NETBOOT_REF]);
    expect(await revParse(host, `origin:${HOST_REF}`)).toBe(v3[HOST]!.commit);
    expect(await revParse(host, `origin:${NETBOOT_REF}`)).toBe(v3[NETBOOT]!.commit);
    const check = await fsck(path.join(served, 'repo'));
    expect(check.ok, check.output).toBe(true);
    expectSameTree(pub, served);
    // Retention (keep 2) retired v1 locally; the delete pass retired it at the destination too.
    expect(fs.readdirSync(path.join(served, 'images', HOST)).sort()).toEqual([builds[1]![HOST]!.version, builds[2]![HOST]!.version, 'latest'].sort());
    expect(fs.readlinkSync(path.join(served, 'images', HOST, 'latest'))).toBe(v3[HOST]!.version);
    const v1Commit = builds[0]![HOST]!.commit;
    expect(fs.existsSync(path.join(served, 'repo/objects', v1Commit.slice(0, 2), `${v1Commit.slice(2)}.commit`))).toBe(false);
    // The only way a summary-verifying client can fail: its two GETs (summary.sig,
    // then summary) straddled the instant the pair was renamed into place.
    for (const s of summaryFailures) expect(s).toMatch(/signature|gpg|verif/i);
  }, 900_000);

  it('a runner with an empty publish dir: publish --to brings DEST down first, continues its history and leaves it whole', async () => {
    // A CI publish job: no local publish dir, builds from the cache. Before the fix, the upload's
    // refs/summary/index and its delete pass replaced DEST's history with this runner's (empty) tree.
    const fresh = path.join(f.root, 'fresh-runner-public');
    const before = treeState(served);
    const r = await f.publish(fresh, { key, extra: ['--to', served] });
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { images: { name: string; previous?: string; commit: string }[]; download: { found: boolean; phases: { name: string; transferred: number }[] }; upload: { phases: { name: string; transferred: number; deleted: number }[] } };
    expect(out.download.found).toBe(true);
    expect(out.download.phases.map((p) => p.name)).toEqual(['pointers', 'objects']);
    expect(out.download.phases.every((p) => p.transferred > 0)).toBe(true);
    // The newest builds are what DEST already serves: "already published", previous = DEST's ref.
    const v3 = builds[2]!;
    expect(out.images.map((i) => [i.name, i.previous])).toEqual([
      [HOST, v3[HOST]!.commit],
      [NETBOOT, v3[NETBOOT]!.commit],
    ]);
    expect(r.stderr).toContain('is already published');
    // Nothing was deleted at DEST and every file of it is still there.
    expect(out.upload.phases.find((p) => p.name === 'delete')!.deleted).toBe(0);
    const after = treeState(served);
    expect([...before.keys()].filter((k) => !after.has(k))).toEqual([]);
    expectSameTree(fresh, served);
    // Run again on the now-mirroring dir: the download sends no object.
    const again = await f.publish(fresh, { key, extra: ['--to', served] });
    expect(again.code, again.stderr).toBe(0);
    expect((JSON.parse(again.stdout) as typeof out).download.phases.find((p) => p.name === 'objects')!.transferred).toBe(0);
  }, 300_000);

  it('refuses a DEST that starts with - (exit 2) and names a missing local parent (exit 1)', async () => {
    const before = treeState(pub);
    for (const dest of ['--to=-e', '--to=--rsh=touch /tmp/x']) {
      const r = await f.treecast(['publish', '--dir', pub, dest]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(/may not start with '-'/);
    }
    const missing = path.join(f.root, 'no-such-dir', 'sub', 'served');
    const r = await f.treecast(['publish', '--dir', pub, '--to', missing]);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain(`the parent directory ${path.dirname(missing)} does not exist`);
    expect(fs.existsSync(path.dirname(missing))).toBe(false);
    // Refused before the publish touched anything.
    expect(treeState(pub)).toEqual(before);
    const inside = await f.treecast(['publish', '--dir', pub, '--to', path.join(pub, 'mirror')]);
    expect(inside.code, inside.stderr).toBe(2);
    expect(inside.stderr).toMatch(/inside it/);
  });
});
