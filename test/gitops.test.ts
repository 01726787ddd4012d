/**
 * Issue "GitOps": plan, ci, diff and the CI-matrix publish (--from) on real
 * temporary git repositories of small tree-based images, through the real CLI.
 *
 *  - plan: which images a commit (or an uncommitted edit) affects and why,
 *    derived images, --matrix, the semantic manifest diff, located errors;
 *  - ci: builds and publishes only what changed (plus never-published
 *    images), refuses a dirty tree unless --allow-dirty;
 *  - diff: two real builds compared file by file, by name@version, commit id and ref;
 *  - publish --from: two caches built by separate processes merged into one
 *    published repository that fsck's clean and serves pulls over HTTP.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../compiler/serve/index.js';
import { runCli, STACK_TRACE } from './helpers/cli.js';
import { makeRepo, ostreeMeta, requireTool, sh, shellTree, type BuiltImage, type FileSpec, type Fixture } from './helpers/build-fixture.js';
import { ANSI, SHARED_INCLUDE, execAsync, gitopsRepo, lineOf, manifestA, publishedCommit, pullOverHttp } from './helpers/gitops-fixture.js';

const REF = { a: 'a/x86_64/stable', b: 'b/x86_64/stable', c: 'c/x86_64/stable' } as const;

interface PlanJson {
  since?: string;
  changed: string[];
  affected: { name: string; reasons: string[]; manifest: string }[];
  changes: Record<string, { packages: { added: string[]; removed: string[] }; files: { added: string[]; removed: string[]; changed: { path: string; fields: string[] }[] }; keys: { key: string; kind: string; before?: unknown; after?: unknown }[] }>;
}

const EMPTY_DIFF = { packages: { added: [], removed: [] }, files: { added: [], removed: [], changed: [] }, keys: [] };

const unquote = (s: string) => (/^'(.*)'$/s.exec(s)?.[1] ?? s);

beforeAll(() => {
  for (const tool of ['git', 'ostree', 'tar']) requireTool(tool);
});

describe('plan: which images a change affects, and why', () => {
  let fx: Fixture | undefined;
  afterEach(() => {
    fx?.cleanup();
    fx = undefined;
  });

  const plan = (f: Fixture, args: string[] = []): PlanJson => {
    const r = f.cli(['plan', '--json', ...args]);
    expect(r.stderr).not.toMatch(STACK_TRACE);
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as PlanJson;
  };

  it('a file in overlays/oa changed: only a is affected, the reason names the file and the overlay', () => {
    fx = gitopsRepo();
    fx.write('overlays/oa/etc/oa/config', 'oa v2\n');
    fx.commit('edit oa');
    const p = plan(fx, ['--since', 'HEAD~1']);
    expect(p.changed).toEqual(['overlays/oa/etc/oa/config']);
    expect(p.affected).toEqual([{ name: 'a', reasons: ['overlays/oa/etc/oa/config changed (overlay overlays/oa)'], manifest: 'images/a.yaml' }]);
    expect(p.changes).toEqual({ a: EMPTY_DIFF });
  });

  it('file names git would quote (non-ASCII, quotes) still map to their overlay', () => {
    const odd = 'overlays/ob/etc/ob/grüße "x".txt';
    fx = gitopsRepo({ files: { [odd]: 'hallo\n' } });
    fx.write(odd, 'servus\n');
    fx.commit('edit a file with an unusual name');
    const p = plan(fx, ['--since', 'HEAD~1']);
    expect(p.changed).toEqual([odd]);
    expect(p.affected).toEqual([{ name: 'b', reasons: [`${odd} changed (overlay overlays/ob)`], manifest: 'images/b.yaml' }]);
  });

  it('the shared include changed: a and b are affected (not c), with the merged-manifest diff', () => {
    fx = gitopsRepo();
    fx.write(SHARED_INCLUDE, 'metadata: { shared: "no" }\nkernel-args: [quiet]\n');
    fx.commit('edit shared include');
    const p = plan(fx, ['--since', 'HEAD~1']);
    expect(p.affected).toEqual([
      { name: 'a', reasons: [`${SHARED_INCLUDE} changed (include)`], manifest: 'images/a.yaml' },
      { name: 'b', reasons: [`${SHARED_INCLUDE} changed (include)`], manifest: 'images/b.yaml' },
    ]);
    for (const n of ['a', 'b']) expect(p.changes[n]).toEqual({ ...EMPTY_DIFF, keys: [{ key: 'metadata.shared', kind: 'changed', before: 'yes', after: 'no' }] });
  });

  it('README.md changed: nothing is affected (json, plain and --matrix agree)', () => {
    fx = gitopsRepo();
    fx.write('README.md', '# fixture image specs\n\nmore words\n');
    fx.commit('docs');
    const p = plan(fx, ['--since', 'HEAD~1']);
    expect(p.changed).toEqual(['README.md']);
    expect(p.affected).toEqual([]);
    expect(p.changes).toEqual({});
    const plain = fx.cli(['plan', '--since', 'HEAD~1']);
    expect(plain.code).toBe(0);
    expect(plain.stdout).toMatch(/^1 path\(s\) changed since HEAD~1; 0 of 3 image\(s\) affected\n$/);
    const m = fx.cli(['plan', '--matrix', '--since', 'HEAD~1']);
    expect(m.code).toBe(0);
    expect(m.stdout).toBe('{"include":[]}\n');
  });

  it('overlays/oa renamed without editing the manifest: exit 1, the error points at the overlays entry of images/a.yaml', () => {
    fx = gitopsRepo();
    fs.renameSync(path.join(fx.dir, 'overlays/oa'), path.join(fx.dir, 'overlays/oa2'));
    fx.commit('rename oa');
    const line = lineOf(manifestA(), /^ {2}- overlays\/oa$/);
    const col = manifestA().split('\n')[line - 1]!.indexOf('overlays/oa') + 1;
    for (const args of [['--json'], ['--matrix'], []]) {
      const r = fx.cli(['plan', '--since', 'HEAD~1', ...args]);
      expect(r.code, `plan ${args.join(' ')}`).toBe(1);
      expect(r.stdout, 'no plan (and no matrix) for an invalid repository').toBe('');
      expect(r.stderr).toContain(`images/a.yaml:${line}:${col}: overlays[0]: directory "overlays/oa" does not exist`);
      expect(r.stderr).not.toMatch(STACK_TRACE);
    }
  });

  it('uncommitted changes (modified, untracked) count without --since', () => {
    fx = gitopsRepo();
    fx.commit('nothing changed in HEAD~1..HEAD'); // so only the working tree differs
    expect(plan(fx).affected).toEqual([]);
    fx.write('overlays/oa/etc/oa/other', 'other v2, not committed\n');
    fx.write('overlays/ob/etc/ob/new-untracked', 'new\n');
    const p = plan(fx);
    expect(p.changed).toEqual(['overlays/oa/etc/oa/other', 'overlays/ob/etc/ob/new-untracked']);
    expect(p.affected).toEqual([
      { name: 'a', reasons: ['overlays/oa/etc/oa/other changed (overlay overlays/oa)'], manifest: 'images/a.yaml' },
      { name: 'b', reasons: ['overlays/ob/etc/ob/new-untracked changed (overlay overlays/ob)'], manifest: 'images/b.yaml' },
    ]);
    // A removed file counts too.
    fx.commit('commit them');
    fx.remove('overlays/oa/etc/oa/other');
    expect(plan(fx, ['--since', 'HEAD']).affected.map((a) => a.name)).toEqual(['a']);
  });

  it('an image derived from a (base: {source: image, image: a}) is affected whenever a is', () => {
    fx = gitopsRepo({ images: ['a', 'b', 'c', 'd'] });
    fx.write('overlays/oa/etc/oa/config', 'oa v2\n');
    fx.commit('edit oa');
    let p = plan(fx, ['--since', 'HEAD~1']);
    expect(p.affected).toEqual([
      { name: 'a', reasons: ['overlays/oa/etc/oa/config changed (overlay overlays/oa)'], manifest: 'images/a.yaml' },
      { name: 'd', reasons: ['base image a is affected'], manifest: 'images/d.yaml' },
    ]);
    fx.write(SHARED_INCLUDE, 'metadata: { shared: "changed" }\n');
    fx.commit('edit shared');
    p = plan(fx, ['--since', 'HEAD~1']);
    expect(p.affected.map((a) => a.name)).toEqual(['a', 'b', 'd']);
    // b alone: d does not follow.
    fx.write('overlays/ob/etc/ob/config', 'ob v2\n');
    fx.commit('edit ob');
    expect(plan(fx, ['--since', 'HEAD~1']).affected.map((a) => a.name)).toEqual(['b']);
  });

  it('--matrix prints exactly the affected images as a GitHub Actions matrix (one line of valid JSON)', () => {
    fx = gitopsRepo();
    fx.write('overlays/oa/etc/oa/config', 'oa v2\n');
    fx.write('overlays/ob/etc/ob/config', 'ob v2\n');
    fx.commit('edit oa and ob');
    const r = fx.cli(['plan', '--matrix', '--since', 'HEAD~1']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.endsWith('\n') && r.stdout.indexOf('\n') === r.stdout.length - 1).toBe(true);
    expect(JSON.parse(r.stdout)).toEqual({
      include: [
        { image: 'a', manifest: 'images/a.yaml' },
        { image: 'b', manifest: 'images/b.yaml' },
      ],
    });
    expect(r.stdout).toBe('{"include":[{"image":"a","manifest":"images/a.yaml"},{"image":"b","manifest":"images/b.yaml"}]}\n');
  });

  it('the semantic diff of a manifest edit: packages, files[] entries and keys; plain output without ANSI escapes when piped', () => {
    const debian = (suite: string, pkgs: string[]) => `name: p\nbase: { source: debian, suite: ${suite} }\npackages: [${pkgs.join(', ')}]\noutputs: { ostree: {} }\n`;
    fx = gitopsRepo({ files: { 'images/p.yaml': debian('bookworm', ['curl', 'less']) } });
    const edited = manifestA()
      .replace('files:\n', 'files:\n  - { path: /etc/new.conf, content: "new\\n", mode: "0600" }\n')
      .replace('content: "a\\n"', 'content: "a v2\\n"')
      .replace('team-a', 'team-z')
      .replace('automatic-version-prefix: "1"\n', '');
    expect(edited).not.toBe(manifestA());
    fx.write('images/a.yaml', edited + 'default-target: multi-user.target\n');
    fx.write('images/p.yaml', debian('trixie', ['curl', 'vim']));
    fx.commit('edit manifests');
    const p = plan(fx, ['--since', 'HEAD~1']);
    expect(p.affected).toEqual([
      { name: 'a', reasons: ['images/a.yaml changed (manifest)'], manifest: 'images/a.yaml' },
      { name: 'p', reasons: ['images/p.yaml changed (manifest)'], manifest: 'images/p.yaml' },
    ]);
    expect(p.changes.a).toEqual({
      packages: { added: [], removed: [] },
      files: { added: ['/etc/new.conf'], removed: [], changed: [{ path: '/etc/a.conf', fields: ['content'] }] },
      keys: [
        { key: 'automatic-version-prefix', kind: 'removed', before: '1' },
        { key: 'default-target', kind: 'added', after: 'multi-user.target' },
        { key: 'metadata.owner', kind: 'changed', before: 'team-a', after: 'team-z' },
      ],
    });
    expect(p.changes.p).toEqual({
      packages: { added: ['vim'], removed: ['less'] },
      files: { added: [], removed: [], changed: [] },
      keys: [{ key: 'base.suite', kind: 'changed', before: 'bookworm', after: 'trixie' }],
    });

    const r = fx.cli(['plan', '--since', 'HEAD~1']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).not.toMatch(ANSI);
    expect(r.stderr).not.toMatch(ANSI);
    const out = r.stdout.split('\n').map((l) => l.trim());
    for (const want of [
      '2 path(s) changed since HEAD~1; 2 of 4 image(s) affected',
      'a (images/a.yaml)',
      'because images/a.yaml changed (manifest)',
      '+ file /etc/new.conf',
      '~ file /etc/a.conf (content)',
      '- automatic-version-prefix: "1"',
      '+ default-target: "multi-user.target"',
      '~ metadata.owner: "team-a" -> "team-z"',
      'p (images/p.yaml)',
      '+ package vim',
      '- package less',
      '~ base.suite: "bookworm" -> "trixie"',
    ])
      expect(out, want).toContain(want);
  });

  it('a repository of image specs in a subdirectory of a larger git repository (treecast.yaml there)', () => {
    const sub = (o: Record<string, FileSpec>) => Object.fromEntries(Object.entries(o).map(([k, v]) => [`infra/${k}`, v]));
    fx = makeRepo({
      prefix: 'gitops-sub',
      files: {
        'app/main.c': 'int main(void) { return 0; }\n',
        ...sub({ ...shellTree('trees/base', { kernel: false }), 'treecast.yaml': 'images: ["images/*.yaml"]\n', [SHARED_INCLUDE]: 'metadata: { shared: "yes" }\n', 'images/a.yaml': manifestA(), 'overlays/oa/etc/oa/config': 'oa v1\n' }),
      },
    });
    fx.write('app/main.c', 'int main(void) { return 1; }\n');
    fx.write('infra/images/a.yaml', manifestA().replace('team-a', 'team-sub'));
    fx.commit('edit app and a');
    const dir = path.join(fx.dir, 'infra');
    const r = runCli(['plan', '--json', '--since', 'HEAD~1', '--repo', dir], { cwd: dir, env: { TREECAST_CACHE_DIR: fx.cacheDir } });
    expect(r.code, r.stderr).toBe(0);
    const p = JSON.parse(r.stdout) as PlanJson;
    // Paths relative to the treecast repository; the app outside it is not a change of it.
    expect(p.changed).toEqual(['images/a.yaml']);
    expect(p.affected).toEqual([{ name: 'a', reasons: ['images/a.yaml changed (manifest)'], manifest: 'images/a.yaml' }]);
    expect(p.changes.a).toEqual({ ...EMPTY_DIFF, keys: [{ key: 'metadata.owner', kind: 'changed', before: 'team-a', after: 'team-sub' }] });
  });

  it('--since naming no commit is a clear error', () => {
    fx = gitopsRepo();
    const r = fx.cli(['plan', '--since', 'no-such-rev']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('--since no-such-rev: not a commit of this repository');
    expect(r.stderr).not.toMatch(STACK_TRACE);
  });
});

describe('ci: build and publish what changed', () => {
  let fx: Fixture;
  let pub: string;
  const refs = () => ({ a: publishedCommit(pub, REF.a), b: publishedCommit(pub, REF.b), c: publishedCommit(pub, REF.c) });
  interface CiJson {
    git: string;
    affected: { name: string }[];
    built: BuiltImage[];
    published: { name: string; ref: string; version: string; commit: string }[];
  }
  const ci = (args: string[]): CiJson => {
    const r = fx.cli(['ci', '--json', ...args]);
    expect(r.stderr).not.toMatch(STACK_TRACE);
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as CiJson;
  };

  beforeAll(() => {
    fx = gitopsRepo({ images: ['a', 'b'], prefix: 'ci' });
    pub = path.join(fx.dir, 'public');
  });
  afterAll(() => fx?.cleanup());

  it('images never published are always built and published, even when the change affects nothing', () => {
    fx.write('README.md', 'docs only\n');
    fx.commit('docs only');
    const r = ci(['--since', 'HEAD~1']);
    expect(r.affected).toEqual([]);
    expect(r.built.map((b) => b.name).sort()).toEqual(['a', 'b']);
    expect(r.published.map((p) => p.name).sort()).toEqual(['a', 'b']);
    expect(refs()).toEqual({ a: r.published.find((p) => p.name === 'a')!.commit, b: r.published.find((p) => p.name === 'b')!.commit, c: undefined });
    expect(r.git).toBe(fx.head());
  });

  it('ci --since HEAD~1 builds and publishes only the affected image; the other published ref is unchanged', () => {
    const before = refs();
    fx.write('overlays/oa/etc/oa/config', 'oa v2\n');
    fx.commit('edit oa');
    const res = fx.cli(['ci', '--since', 'HEAD~1']);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stderr).toContain('ci: 1 of 2 image(s) to build and publish: a');
    expect(res.stdout).toMatch(/^a\t1\.2\t[0-9a-f]{12}\tbuilt in [\d.]+s\tpublished/);
    expect(res.stdout).not.toMatch(/^b\t/m);
    const after = refs();
    expect(after.b).toBe(before.b);
    expect(after.a).not.toBe(before.a);
    expect(unquote(ostreeMeta(path.join(pub, 'repo'), REF.a, 'version'))).toBe('1.2');
    expect(unquote(ostreeMeta(path.join(pub, 'repo'), REF.a, 'treecast.git-commit'))).toBe(fx.head());
    // Nothing changed since: nothing to do.
    const again = ci(['--since', 'HEAD']);
    expect(again.built).toEqual([]);
    expect(refs()).toEqual(after);
  });

  it('refuses a dirty working tree (exit 1, names --allow-dirty) and publishes nothing; --allow-dirty builds the uncommitted change', () => {
    const before = refs();
    fx.write('overlays/ob/etc/ob/config', 'ob v2, not committed\n');
    const r = fx.cli(['ci', '--since', 'HEAD']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('--allow-dirty');
    expect(r.stderr).toMatch(/uncommitted changes/);
    expect(r.stderr).not.toMatch(STACK_TRACE);
    expect(r.stdout).toBe('');
    expect(refs()).toEqual(before);

    const ok = ci(['--since', 'HEAD', '--allow-dirty']);
    expect(ok.git).toBe(`${fx.head()}-dirty`);
    expect(ok.published.map((p) => p.name)).toEqual(['b']);
    const after = refs();
    expect(after.a).toBe(before.a);
    expect(after.b).not.toBe(before.b);
    expect(unquote(ostreeMeta(path.join(pub, 'repo'), REF.b, 'treecast.git-commit'))).toBe(`${fx.head()}-dirty`);
    fx.commit('commit ob');
  });

  it('a new image committed before an unrelated commit is still published (it was never published)', () => {
    fx.write('images/c.yaml', 'name: c\nbase: { source: tree, path: trees/base }\nautomatic-version-prefix: "1"\noutputs: { ostree: {} }\n');
    fx.commit('add c');
    fx.write('README.md', 'docs again\n');
    fx.commit('docs');
    const before = refs();
    const r = ci(['--since', 'HEAD~1']);
    expect(r.affected).toEqual([]);
    expect(r.published.map((p) => p.name)).toEqual(['c']);
    const after = refs();
    expect(after).toEqual({ ...before, c: r.published[0]!.commit });
  });
});

describe('diff: two real builds of one image', () => {
  let fx: Fixture;
  let v1: BuiltImage;
  let v2: BuiltImage;

  interface DiffJson {
    repo: string;
    from: { spec: string; commit: string; version?: string };
    to: { spec: string; commit: string; version?: string };
    packages: { added: unknown[]; removed: unknown[]; upgraded: unknown[] };
    files: { path: string; kind: string; before?: Record<string, unknown>; after?: Record<string, unknown> }[];
    metadata: { key: string; before?: string; after?: string }[];
  }
  const diff = (a: string, b: string): DiffJson => {
    const r = fx.cli(['diff', a, b, '--json']);
    expect(r.stderr).not.toMatch(STACK_TRACE);
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as DiffJson;
  };
  const file = (mode: string, size: number) => ({ type: 'file', mode, uid: 0, gid: 0, size });
  const OS_RELEASE = (version: string) => `ID=treecast-fixture\nNAME="treecast fixture"\nVERSION_ID=1\nPRETTY_NAME="treecast fixture"\nIMAGE_ID=a\nIMAGE_VERSION=${version}\n`;

  beforeAll(() => {
    fx = gitopsRepo({ images: ['a'], prefix: 'diff', files: { 'overlays/oa/etc/oa/gone': 'removed in v2\n' } });
    [v1] = fx.build(['a']) as [BuiltImage];
    fx.write('overlays/oa/etc/oa/config', 'oa v2, longer content\n'); // was "oa v1\n"
    fs.chmodSync(path.join(fx.dir, 'overlays/oa/etc/oa/other'), 0o600); // content unchanged
    fx.write('overlays/oa/etc/oa/added', 'added in v2\n');
    fx.remove('overlays/oa/etc/oa/gone');
    fx.commit('v2');
    [v2] = fx.build(['a']) as [BuiltImage];
  });
  afterAll(() => fx?.cleanup());

  const EXPECTED_FILES = [
    { path: '/usr/etc/oa/added', kind: 'added', after: file('0644', 'added in v2\n'.length) },
    { path: '/usr/etc/oa/config', kind: 'modified', before: file('0644', 'oa v1\n'.length), after: file('0644', 'oa v2, longer content\n'.length) },
    { path: '/usr/etc/oa/gone', kind: 'removed', before: file('0644', 'removed in v2\n'.length) },
    { path: '/usr/etc/oa/other', kind: 'modified', before: file('0644', 'other v1\n'.length), after: file('0600', 'other v1\n'.length) },
    // IMAGE_VERSION (finalize): every version says which it is.
    { path: '/usr/lib/os-release', kind: 'modified', before: file('0644', OS_RELEASE('1.1').length), after: file('0644', OS_RELEASE('1.2').length) },
  ];

  it('name@v1 name@v2 --json: exactly the file changes, no package changes (tree image), the version change', () => {
    expect([v1.version, v2.version]).toEqual(['1.1', '1.2']);
    const d = diff(`a@${v1.version}`, `a@${v2.version}`);
    expect(d.from).toEqual({ spec: 'a@1.1', commit: v1.commit, version: '1.1' });
    expect(d.to).toEqual({ spec: 'a@1.2', commit: v2.commit, version: '1.2' });
    expect(d.files).toEqual(EXPECTED_FILES);
    expect(d.packages).toEqual({ added: [], removed: [], upgraded: [] });
    expect(d.metadata).toContainEqual({ key: 'version', before: '1.1', after: '1.2' });
    expect(d.metadata).toContainEqual({ key: 'treecast.input-hash', before: v1.inputHash, after: v2.inputHash });
    // Only keys that differ; the name is the same.
    expect(d.metadata.map((m) => m.key)).not.toContain('treecast.name');
    for (const m of d.metadata) expect(m.before).not.toBe(m.after);
  });

  it('commit ids and refs work as specs too', () => {
    expect(diff(v1.commit, v2.commit).files).toEqual(EXPECTED_FILES);
    const byRef = diff(v1.commit, REF.a);
    expect(byRef.to.commit).toBe(v2.commit);
    expect(byRef.files).toEqual(EXPECTED_FILES);
    // Reversed: added <-> removed.
    const back = diff(REF.a, `a@${v1.version}`);
    expect(back.files.map((f) => [f.path, f.kind])).toEqual([
      ['/usr/etc/oa/added', 'removed'],
      ['/usr/etc/oa/config', 'modified'],
      ['/usr/etc/oa/gone', 'added'],
      ['/usr/etc/oa/other', 'modified'],
      ['/usr/lib/os-release', 'modified'],
    ]);
    // Same commit twice: nothing.
    const same = diff(`a@${v2.version}`, v2.commit);
    expect(same.files).toEqual([]);
    expect(same.metadata).toEqual([]);
  });

  it('plain output names sizes and modes, without ANSI escapes when piped', () => {
    const r = fx.cli(['diff', `a@${v1.version}`, `a@${v2.version}`]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).not.toMatch(ANSI);
    const out = r.stdout.split('\n').map((l) => l.trim());
    expect(out).toContain('packages: 0 added, 0 removed, 0 upgraded');
    expect(out).toContain('files: 5 changed');
    expect(out.some((l) => l.startsWith('~ /usr/lib/os-release'))).toBe(true);
    expect(out).toContain('+ /usr/etc/oa/added (file 0644 12 bytes)');
    expect(out).toContain('~ /usr/etc/oa/config (size 6 -> 22)');
    expect(out).toContain('- /usr/etc/oa/gone (file 0644 14 bytes)');
    expect(out).toContain('~ /usr/etc/oa/other (mode 0644 -> 0600)');
    expect(out).toContain('~ version: 1.1 -> 1.2');
  });

  it('a bad spec exits 1 with a clear message; a wrong number of arguments is a usage error', () => {
    for (const bad of ['a@9.9', 'no-such-image@1.1', 'nonsense/ref/x', '0'.repeat(64)]) {
      const r = fx.cli(['diff', bad, `a@${v2.version}`]);
      expect(r.code, bad).toBe(1);
      expect(r.stderr).toContain(`"${bad}" is not a built or published commit, ref or name@version`);
      expect(r.stderr).not.toMatch(STACK_TRACE);
      expect(r.stdout).toBe('');
    }
    const r = fx.cli(['diff', `a@${v1.version}`]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('diff needs exactly two versions');
  });
});

describe('publish --from: merging the caches of a CI build matrix', () => {
  let fx: Fixture;
  let server: RunningServer | undefined;
  let builtA: BuiltImage;
  let builtB: BuiltImage;
  let cacheA: string;
  let cacheB: string;
  const clients: string[] = [];

  beforeAll(async () => {
    fx = gitopsRepo({ images: ['a', 'b'], prefix: 'merge' });
    cacheA = fx.newCacheDir();
    cacheB = fx.newCacheDir();
    // Two matrix jobs: separate processes, separate caches.
    [builtA] = fx.build(['a'], { cacheDir: cacheA }) as [BuiltImage];
    [builtB] = fx.build(['b'], { cacheDir: cacheB }) as [BuiltImage];
  });
  afterAll(async () => {
    await server?.close();
    for (const c of clients) fs.rmSync(c, { recursive: true, force: true });
    fx?.cleanup();
  });

  it('each cache holds only its own image', () => {
    const refsOf = (cache: string) => sh('ostree', ['refs', `--repo=${path.join(cache, 'repo')}`]).split('\n').filter(Boolean);
    expect(refsOf(cacheA)).toContain(REF.a);
    expect(refsOf(cacheA)).not.toContain(REF.b);
    expect(refsOf(cacheB)).toContain(REF.b);
    expect(refsOf(cacheB)).not.toContain(REF.a);
  });

  it('one publish of a and b --from both caches makes one consistent repository: both refs, summary, fsck, HTTP pulls', async () => {
    // The publish job has neither image in its own cache.
    const own = fx.newCacheDir();
    const r = fx.cli(['publish', 'a', 'b', '--from', cacheA, '--from', cacheB, '--json'], { cacheDir: own });
    expect(r.stderr).not.toMatch(STACK_TRACE);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { images: { name: string; ref: string; commit: string; version: string }[] };
    expect(out.images.map((i) => [i.name, i.ref, i.commit])).toEqual([
      ['a', REF.a, builtA.commit],
      ['b', REF.b, builtB.commit],
    ]);

    const repo = path.join(fx.dir, 'public', 'repo');
    expect(publishedCommit(path.join(fx.dir, 'public'), REF.a)).toBe(builtA.commit);
    expect(publishedCommit(path.join(fx.dir, 'public'), REF.b)).toBe(builtB.commit);
    const refs = (await execAsync('ostree', ['refs', `--repo=${repo}`])).stdout.split('\n').filter(Boolean).sort();
    expect(refs).toEqual([REF.a, REF.b]);
    const summary = await execAsync('ostree', ['summary', '--view', `--repo=${repo}`]);
    expect(summary.code, summary.stderr).toBe(0);
    expect(summary.stdout).toContain(`* ${REF.a}\n`);
    expect(summary.stdout).toContain(`* ${REF.b}\n`);
    expect(summary.stdout).toContain(builtA.commit);
    expect(summary.stdout).toContain(builtB.commit);
    const fsck = await execAsync('ostree', ['fsck', `--repo=${repo}`]);
    expect(fsck.code, fsck.stdout + fsck.stderr).toBe(0);
    expect(fsck.stdout).toContain('object fsck of 2 commits completed successfully - no errors found.');

    server = await startServer({ dir: path.join(fx.dir, 'public'), host: '127.0.0.1', port: 0, log: () => {} });
    for (const [ref, commit] of [
      [REF.a, builtA.commit],
      [REF.b, builtB.commit],
    ] as const) {
      const pull = await pullOverHttp(`${server.url}/repo`, ref);
      clients.push(pull.dir);
      expect(pull.ok, pull.output).toBe(true);
      expect(pull.commit).toBe(commit);
      const cfsck = await execAsync('ostree', ['fsck', `--repo=${path.join(pull.dir, 'repo')}`]);
      expect(cfsck.code, cfsck.stderr).toBe(0);
    }
  });
});
