/**
 * The input policy (compiler/paths.ts resolveRepoInput): manifests, includes
 * and treecast.yaml arrive in pull requests, treecast runs as root, so no input
 * may be the repository's .git (the CI token), the cache/publish/signing dirs,
 * or anything outside the repository reached through a symlink. Each refusal is
 * a located diagnostic at the offending value, from `treecast validate` and
 * again from `treecast build` before it does any work. Also: keys that would
 * reach the JavaScript prototype, and the include budget.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatDiagnostic } from '../../compiler/diagnostics.js';
import { validateManifest } from '../../compiler/manifest/validate.js';
import { LIMITS, plain, type LNode } from '../../compiler/manifest/yaml.js';
import { openRepo } from '../../compiler/repo.js';
import { makeRepo, ostreeCat, shellTree, type Fixture } from '../helpers/build-fixture.js';
import { lines, STACK_TRACE } from '../helpers/cli.js';
import { makeCanaries, SECRET_TEXT, type Canaries } from './canary.js';

const GIT_WHY = "it holds the repository's credentials (the CI token) and is never an image input";
const CACHE_WHY = 'it holds build state and the signing key made by treecast keygen';
const PUBLISH_WHY = "it is treecast's own output";
const KEYGEN_WHY = 'treecast keygen keeps the secret signing key there';
const GPG_WHY = 'it holds the secret signing key';
const COPIED = 'a directory input is copied whole; ';
const LINK_HINT = 'a symlink may point anywhere inside the repository, never out of it';
const RESERVED_HINT = '"__proto__", "constructor" and "prototype" are reserved: they would reach into the JavaScript object model';
const DIR_HINT = 'treecast.yaml comes with pull requests, so the directories it names stay inside the repository; point them elsewhere with TREECAST_CACHE_DIR / TREECAST_PUBLISH_DIR';

let canaries: Canaries;
let fx: Fixture;

/** A manifest whose line 3 (or base.path on line 2) carries the value under test. */
function manifest(name: string, field: string, basePath = 'tree'): string {
  return `name: ${name}\nbase: { source: tree, path: ${basePath} }\n${field}\n`;
}

/** file:line:col of the first occurrence of `needle` in a case file. */
function at(file: string, needle: string, from = 0): string {
  const text = fs.readFileSync(path.join(fx.dir, file), 'utf8');
  const offset = text.indexOf(needle, from);
  if (offset < 0) throw new Error(`${needle} not in ${file}`);
  const before = text.slice(0, offset).split('\n');
  return `${file}:${before.length}:${before[before.length - 1]!.length + 1}`;
}

interface Case {
  name: string;
  /** Case manifest (cases/<file>.yaml) */
  file: string;
  text: string;
  /** Where the diagnostic points: the first occurrence of this text in the file. */
  needle: string;
  keyPath: string;
  message: string;
  hint: string;
  /** Run with the cache dir at <repo>/.treecast instead of outside the repository. */
  cacheInRepo?: boolean;
}

const expand = (message: string) => message.replaceAll('{SECRET}', canaries.secret).replaceAll('{NEST}', canaries.nest);

/** `{SECRET}` and `{NEST}` in messages stand for the canary paths (made in beforeAll). */
const CASES: Case[] = [
  // .git, as written
  { name: 'include of .git/config', file: 'inc-git', text: manifest('inc-git', 'include: [../.git/config]'), needle: '../.git/config', keyPath: 'include', message: 'include "../.git/config" is inside the git directory ".git"', hint: GIT_WHY },
  { name: 'overlay .git/', file: 'ovl-git', text: manifest('ovl-git', 'overlays: [.git/]'), needle: '.git/]', keyPath: 'overlays[0]', message: '".git/" is inside the git directory ".git"', hint: GIT_WHY },
  { name: 'files[].source .git/config', file: 'src-git', text: manifest('src-git', 'files: [{ path: /etc/x, source: .git/config }]'), needle: '.git/config', keyPath: 'files[0].source', message: '".git/config" is inside the git directory ".git"', hint: GIT_WHY },
  { name: 'postprocess-script .git/config', file: 'pp-git', text: manifest('pp-git', 'postprocess-script: .git/config'), needle: '.git/config', keyPath: 'postprocess-script', message: '".git/config" is inside the git directory ".git"', hint: GIT_WHY },
  { name: 'base.path .git', file: 'base-git', text: manifest('base-git', '', '.git'), needle: '.git }', keyPath: 'base.path', message: '".git" is inside the git directory ".git"', hint: GIT_WHY },
  { name: 'source through an in-repo symlink to .git', file: 'src-git-link', text: manifest('src-git-link', 'files: [{ path: /etc/x, source: git-link/config }]'), needle: 'git-link/config', keyPath: 'files[0].source', message: '"git-link/config" is inside the git directory ".git" (through a symlink)', hint: GIT_WHY },
  // the cache dir, the .treecast dir, the publish dir, the signing homedir
  { name: 'overlay .treecast when it is the cache dir', file: 'ovl-cache', text: manifest('ovl-cache', 'overlays: [.treecast]'), needle: '.treecast]', keyPath: 'overlays[0]', message: '".treecast" is the cache dir ".treecast"', hint: CACHE_WHY, cacheInRepo: true },
  { name: 'source inside .treecast (keygen homedir), cache elsewhere', file: 'src-keygen', text: manifest('src-keygen', 'files: [{ path: /etc/x, source: .treecast/gnupg/private-keys-v1.d/secret.key }]'), needle: '.treecast/', keyPath: 'files[0].source', message: '".treecast/gnupg/private-keys-v1.d/secret.key" is inside the .treecast dir ".treecast"', hint: KEYGEN_WHY },
  { name: 'include inside the cache dir', file: 'inc-cache', text: manifest('inc-cache', 'include: [../.treecast/gnupg/x.yaml]'), needle: '../.treecast', keyPath: 'include', message: 'include "../.treecast/gnupg/x.yaml" is inside the cache dir ".treecast"', hint: CACHE_WHY, cacheInRepo: true },
  { name: 'overlay public/ (the publish dir)', file: 'ovl-public', text: manifest('ovl-public', 'overlays: [public/]'), needle: 'public/', keyPath: 'overlays[0]', message: '"public/" is the publish dir "public"', hint: PUBLISH_WHY },
  { name: 'postprocess-script in the publish dir', file: 'pp-public', text: manifest('pp-public', 'postprocess-script: public/index.json'), needle: 'public/', keyPath: 'postprocess-script', message: '"public/index.json" is inside the publish dir "public"', hint: PUBLISH_WHY },
  { name: 'include in the publish dir', file: 'inc-public', text: manifest('inc-public', 'include: [../public/index.json]'), needle: '../public', keyPath: 'include', message: 'include "../public/index.json" is inside the publish dir "public"', hint: PUBLISH_WHY },
  { name: 'source in the signing homedir', file: 'src-gpg', text: manifest('src-gpg', 'files: [{ path: /etc/x, source: keys/gnupg/private-keys-v1.d/signing.key }]'), needle: 'keys/', keyPath: 'files[0].source', message: '"keys/gnupg/private-keys-v1.d/signing.key" is inside the signing homedir (signing.gpg-homedir) "keys/gnupg"', hint: GPG_WHY },
  { name: 'base.path containing the signing homedir', file: 'base-gpg', text: manifest('base-gpg', '', 'keys'), needle: 'keys }', keyPath: 'base.path', message: '"keys" contains the signing homedir (signing.gpg-homedir) "keys/gnupg"', hint: COPIED + GPG_WHY },
  // directories that contain .git
  { name: 'overlay "." (the repository root)', file: 'ovl-dot', text: manifest('ovl-dot', 'overlays: [.]'), needle: '.]', keyPath: 'overlays[0]', message: '"." contains the git directory ".git"', hint: COPIED + GIT_WHY },
  { name: 'overlay "./"', file: 'ovl-dot-slash', text: manifest('ovl-dot-slash', 'overlays: [./]'), needle: './]', keyPath: 'overlays[0]', message: '"./" contains the git directory ".git"', hint: COPIED + GIT_WHY },
  { name: 'base.path "."', file: 'base-dot', text: manifest('base-dot', '', '.'), needle: '. }', keyPath: 'base.path', message: '"." contains the git directory ".git"', hint: COPIED + GIT_WHY },
  { name: 'overlay with a vendored .git inside', file: 'ovl-vendored', text: manifest('ovl-vendored', 'overlays: [overlays/vendored]'), needle: 'overlays/vendored', keyPath: 'overlays[0]', message: '"overlays/vendored" contains the git directory "overlays/vendored/lib/.git"', hint: COPIED + GIT_WHY },
  // symlinks leaving the repository
  { name: 'source: a symlink to the canary secret', file: 'src-out', text: manifest('src-out', 'files: [{ path: /etc/x, source: files/secret-link }]'), needle: 'files/secret-link', keyPath: 'files[0].source', message: `"files/secret-link" leaves the repository through the symlink files/secret-link -> {SECRET}`, hint: LINK_HINT },
  { name: 'source below a symlinked directory', file: 'src-out-dir', text: manifest('src-out-dir', 'files: [{ path: /etc/x, source: overlays/link-out/passwd }]'), needle: 'overlays/link-out', keyPath: 'files[0].source', message: `"overlays/link-out/passwd" leaves the repository through the symlink overlays/link-out -> {NEST}`, hint: LINK_HINT },
  { name: 'overlay: a symlink to the canary dir', file: 'ovl-out', text: manifest('ovl-out', 'overlays: [overlays/link-out]'), needle: 'overlays/link-out', keyPath: 'overlays[0]', message: `"overlays/link-out" leaves the repository through the symlink overlays/link-out -> {NEST}`, hint: LINK_HINT },
  { name: 'include through a symlink out', file: 'inc-out', text: manifest('inc-out', 'include: [../files/inc-out.yaml]'), needle: '../files', keyPath: 'include', message: `include "../files/inc-out.yaml" leaves the repository through the symlink files/inc-out.yaml -> {SECRET}`, hint: LINK_HINT },
  { name: 'postprocess-script through a symlink out', file: 'pp-out', text: manifest('pp-out', 'postprocess-script: scripts/out.sh'), needle: 'scripts/out.sh', keyPath: 'postprocess-script', message: `"scripts/out.sh" leaves the repository through the symlink scripts/out.sh -> {SECRET}`, hint: LINK_HINT },
  { name: 'base.path through a symlink out', file: 'base-out', text: manifest('base-out', '', 'tree-out'), needle: 'tree-out', keyPath: 'base.path', message: `"tree-out" leaves the repository through the symlink tree-out -> {NEST}`, hint: LINK_HINT },
  // keys that would reach the prototype
  { name: '__proto__ at the top level', file: 'proto-top', text: manifest('proto-top', '__proto__: { overlays: [.] }'), needle: '__proto__', keyPath: '__proto__', message: 'key "__proto__" is not allowed', hint: RESERVED_HINT },
  { name: 'quoted "__proto__"', file: 'proto-quoted', text: manifest('proto-quoted', '"__proto__": {}'), needle: '"__proto__"', keyPath: '__proto__', message: 'key "__proto__" is not allowed', hint: RESERVED_HINT },
  { name: 'constructor nested in metadata', file: 'ctor-nested', text: manifest('ctor-nested', 'metadata:\n  owner: ops\n  constructor: x'), needle: 'constructor', keyPath: 'metadata.constructor', message: 'key "constructor" is not allowed', hint: RESERVED_HINT },
  { name: 'prototype in a files[] entry', file: 'prototype-files', text: manifest('prototype-files', 'files:\n  - { path: /etc/x, content: y, prototype: z }'), needle: 'prototype:', keyPath: 'files[0].prototype', message: 'key "prototype" is not allowed', hint: RESERVED_HINT },
];

beforeAll(() => {
  canaries = makeCanaries();
  fx = makeRepo({
    prefix: 'input-policy',
    files: {
      '.gitignore': '.treecast/\npublic/\n',
      'treecast.yaml': 'signing: { gpg-key: 0123456789ABCDEF, gpg-homedir: keys/gnupg }\n',
      'tree/etc/hostname': 'fixture\n',
      '.treecast/gnupg/private-keys-v1.d/secret.key': 'keygen secret\n',
      '.treecast/gnupg/x.yaml': 'kernel-args: [quiet]\n',
      'public/index.json': '{}\n',
      'keys/gnupg/private-keys-v1.d/signing.key': 'signing secret\n',
      'files/motd': 'hello through an in-repo link\n',
      'files/motd-link': { symlink: 'motd' },
      'files/secret-link': { symlink: canaries.secret },
      'files/inc-out.yaml': { symlink: canaries.secret },
      'scripts/out.sh': { symlink: canaries.secret },
      'tree-out': { symlink: canaries.nest },
      'git-link': { symlink: '.git' },
      'overlays/ok/etc/issue': 'ok\n',
      'overlays/link-in': { symlink: 'ok' },
      'overlays/link-out': { symlink: canaries.nest },
      'cases/in-repo-links.yaml': manifest('in-repo-links', 'overlays: [overlays/link-in]\nfiles: [{ path: /etc/motd, source: files/motd-link }]'),
    },
  });
  // After the commit: git itself would not add a nested .git.
  fx.write('overlays/vendored/lib/.git/config', '[remote "origin"]\n\turl = https://token@example.invalid/x\n');
  for (const c of CASES) fx.write(`cases/${c.file}.yaml`, c.text);
});

afterAll(() => {
  fx?.cleanup();
  canaries?.cleanup();
});

describe('treecast validate refuses every input the policy forbids, at the offending value', () => {
  it.each(CASES)('$name', (c) => {
    const file = `cases/${c.file}.yaml`;
    const r = fx.cli(['validate', file], c.cacheInRepo ? { cacheDir: path.join(fx.dir, '.treecast') } : {});
    expect(r.code, `${c.name}\n${r.stderr}`).toBe(1);
    expect(lines(r.stderr), c.name).toEqual([`${at(file, c.needle)}: ${c.keyPath}: ${expand(c.message)} (hint: ${c.hint})`, '1 problem(s) found']);
    expect(r.stderr).not.toContain(SECRET_TEXT.trim());
    expect(r.stderr).not.toMatch(STACK_TRACE);
  });

  it('a reserved key inside an included file is located there, with the include chain', () => {
    fx.write('cases/common/proto.yaml', 'kernel-args: [quiet]\nunits:\n  prototype: { enable: [x.service] }\n');
    fx.write('cases/proto-include.yaml', manifest('proto-include', 'include: [common/proto.yaml]'));
    const r = fx.cli(['validate', 'cases/proto-include.yaml']);
    expect(r.code).toBe(1);
    expect(lines(r.stderr)).toEqual([`cases/common/proto.yaml:3:3: units.prototype: key "prototype" is not allowed (hint: ${RESERVED_HINT}) [included from cases/proto-include.yaml:3:11]`, '1 problem(s) found']);
  });

  it('in-repo symlinks (a source file, an overlay dir) are accepted', () => {
    const r = fx.cli(['validate', 'cases/in-repo-links.yaml']);
    expect(r.stderr).toBe('1 image manifest(s) valid\n');
    expect(r.code).toBe(0);
  });

  it('plain() never assigns through a prototype, even for a tree the parser would refuse', () => {
    const loc = { file: 'x.yaml', line: 1, col: 1 };
    const tree: LNode = { kind: 'map', loc, entries: new Map([['__proto__', { keyLoc: loc, node: { kind: 'map', loc, entries: new Map([['packages', { keyLoc: loc, node: { kind: 'seq', loc, items: [{ kind: 'scalar', loc, value: 'evil' }] } }]]) } }]]) };
    const value = plain(tree) as Record<string, unknown>;
    expect(Object.getPrototypeOf(value)).toBe(Object.prototype);
    expect(Object.keys(value)).toEqual(['__proto__']);
    expect((value as { packages?: unknown }).packages).toBeUndefined();
  });
});

describe('treecast build refuses before doing any work', () => {
  it.each(['src-git', 'src-out', 'ovl-dot', 'inc-out', 'ovl-out', 'proto-top'])('%s', (name) => {
    const c = CASES.find((x) => x.file === name)!;
    const file = `cases/${name}.yaml`;
    const r = fx.cli(['build', file]);
    expect(r.code, r.stderr).toBe(1);
    expect(lines(r.stderr)).toEqual([`${at(file, c.needle)}: ${c.keyPath}: ${expand(c.message)} (hint: ${c.hint})`, 'treecast: invalid image manifests']);
    expect(r.stdout + r.stderr).not.toContain(SECRET_TEXT.trim());
    expect(fs.existsSync(path.join(fx.cacheDir, 'repo'))).toBe(false);
    canaries.assertUnchanged();
  });
});

describe('include budget', () => {
  it('a chain that fans out (4 includes per level, 6 levels: 5461 inclusions) is refused at the 65th inclusion, located with its include chain', () => {
    // lN.yaml includes l(N+1).yaml four times; l6.yaml is a leaf.
    for (let n = 1; n <= 5; n++) fx.write(`cases/budget/l${n}.yaml`, `include: [${Array(4).fill(`l${n + 1}.yaml`).join(', ')}]\n`);
    fx.write('cases/budget/l6.yaml', 'kernel-args: [quiet]\n');
    fx.write('cases/budget.yaml', manifest('budget', 'include: [budget/l1.yaml]'));
    // Inclusions in depth-first order: the top file is 1, l1..l5 are 2..6, l4's subtrees hold 21 each;
    // the 64th is the first l6 of the 4th l5 of the 3rd l4, so its second l6 (column 20) is refused.
    const expected = `cases/budget/l5.yaml:1:20: include: refused: this manifest and its includes load more than ${LIMITS.includeFiles} files (LIMITS.includeFiles) (hint: every inclusion counts, also of a file already included elsewhere) [included from cases/budget/l4.yaml:1:38 <- cases/budget/l3.yaml:1:29 <- cases/budget/l2.yaml:1:11 <- cases/budget/l1.yaml:1:11 <- cases/budget.yaml:3:11]`;
    const r = validateManifest(path.join(fx.dir, 'cases/budget.yaml'), fx.repo());
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.diagnostics.map(formatDiagnostic)).toEqual([expected]);
    expect(r.files.map((f) => path.relative(fx.dir, f))).toEqual(['cases/budget.yaml', ...[1, 2, 3, 4, 5, 6].map((n) => `cases/budget/l${n}.yaml`)]);
    const cli = fx.cli(['validate', 'cases/budget.yaml']);
    expect(cli.code).toBe(1);
    expect(lines(cli.stderr)).toEqual([expected, '1 problem(s) found']);
  });

  it('16 levels (4^16 leaves, hours of merging without a budget) are refused in seconds', () => {
    for (let n = 1; n <= 15; n++) fx.write(`cases/deep/l${n}.yaml`, `include: [${Array(4).fill(`l${n + 1}.yaml`).join(', ')}]\n`);
    fx.write('cases/deep/l16.yaml', 'kernel-args: [quiet]\n');
    fx.write('cases/deep.yaml', manifest('deep', 'include: [deep/l1.yaml]'));
    const start = performance.now();
    const r = validateManifest(path.join(fx.dir, 'cases/deep.yaml'), fx.repo());
    expect(performance.now() - start).toBeLessThan(5000);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.diagnostics.map((d) => d.message)).toEqual([`refused: this manifest and its includes load more than ${LIMITS.includeFiles} files (LIMITS.includeFiles)`]);
    expect(r.files).toHaveLength(17);
  });

  it('bytes: five inclusions of a 900 KiB file pass 4 MiB at the fifth', () => {
    fx.write('cases/bytes/big.yaml', `kernel-args: [quiet]\n#${'x'.repeat(900 * 1024)}\n`);
    fx.write('cases/bytes.yaml', manifest('bytes', `include: [${Array(5).fill('bytes/big.yaml').join(', ')}]`));
    const r = fx.cli(['validate', 'cases/bytes.yaml']);
    expect(r.code).toBe(1);
    expect(lines(r.stderr)).toEqual([`cases/bytes.yaml:3:75: include: refused: this manifest and its includes add up to more than 4 MiB (LIMITS.includeBytes) (hint: every inclusion counts, also of a file already included elsewhere)`, '1 problem(s) found']);
  });

  it('a diamond (two includes sharing a third) is valid, lists the shared file once and merges it twice', () => {
    fx.write('cases/diamond/shared.yaml', 'kernel-args: [quiet]\n');
    fx.write('cases/diamond/x.yaml', 'include: [shared.yaml]\n');
    fx.write('cases/diamond/y.yaml', 'include: [shared.yaml]\n');
    fx.write('cases/diamond.yaml', manifest('diamond', 'include: [diamond/x.yaml, diamond/y.yaml]'));
    const r = validateManifest(path.join(fx.dir, 'cases/diamond.yaml'), fx.repo());
    expect(r.ok, r.ok ? '' : r.diagnostics.map(formatDiagnostic).join('\n')).toBe(true);
    if (!r.ok) return;
    expect(r.image.files.map((f) => path.relative(fx.dir, f))).toEqual(['cases/diamond.yaml', 'cases/diamond/x.yaml', 'cases/diamond/shared.yaml', 'cases/diamond/y.yaml']);
    expect(r.image.manifest['kernel-args']).toEqual(['quiet', 'quiet']);
  });
});

describe('treecast.yaml', () => {
  const repos: Fixture[] = [];
  afterAll(() => repos.forEach((r) => r.cleanup()));

  /** A repository with one valid image and this treecast.yaml; `treecast validate` must refuse it. */
  function refused(config: string | { symlink: string }, extra: Record<string, string | { symlink: string }> = {}) {
    const r = makeRepo({ prefix: 'input-policy-config', git: false, files: { 'treecast.yaml': config, 'tree/etc/hostname': 'x\n', 'images/a.yaml': manifest('a', ''), ...extra } });
    repos.push(r);
    return r.cli(['validate']);
  }
  const col = (text: string, needle: string) => text.indexOf(needle) + 1;

  it.each([
    ['publish.dir /etc', 'publish: { dir: /etc }\n', '/etc', 'publish.dir', '"/etc" is outside the repository', DIR_HINT],
    ['cache-dir ../elsewhere', 'cache-dir: ../elsewhere\n', '../elsewhere', 'cache-dir', '"../elsewhere" is outside the repository', DIR_HINT],
    ['publish.dir inside .git', 'publish: { dir: .git/public }\n', '.git/public', 'publish.dir', '".git/public" is inside the git directory', 'treecast must never write into .git'],
    ['publish.dir the repository root', 'publish: { dir: . }\n', '.', 'publish.dir', '"." is the repository root', 'name a directory inside it, e.g. public'],
    ['images glob with ..', 'images: ["../*.yaml"]\n', '"../', 'images[0]', '"../*.yaml" reaches outside the repository', 'image globs are relative to the repository root, without ".."'],
    ['images glob into .git', 'images: [".git/*"]\n', '".git', 'images[0]', '".git/*" reaches into the git directory', "the git directory holds the repository's credentials and is never an input"],
  ])('%s', (_name, config, needle, keyPath, message, hint) => {
    const r = refused(config);
    expect(r.code).toBe(1);
    expect(lines(r.stderr)).toEqual([`treecast.yaml:1:${col(config, needle)}: ${keyPath}: ${message} (hint: ${hint})`, 'treecast: invalid treecast.yaml']);
  });

  it('publish.dir through a symlink out of the repository', () => {
    const r = refused('publish: { dir: out/public }\n', { out: { symlink: canaries.dir } });
    expect(r.code).toBe(1);
    expect(lines(r.stderr)).toEqual([`treecast.yaml:1:17: publish.dir: "out/public" leaves the repository through the symlink out -> ${canaries.dir} (hint: ${DIR_HINT})`, 'treecast: invalid treecast.yaml']);
    canaries.assertUnchanged();
  });

  it('treecast.yaml itself a symlink out of the repository: refused before it is read', () => {
    const r = refused({ symlink: canaries.secret });
    expect(r.code).toBe(1);
    expect(lines(r.stderr)).toEqual([`treecast.yaml:1:1: "treecast.yaml" leaves the repository through the symlink treecast.yaml -> ${canaries.secret} (hint: ${LINK_HINT})`, 'treecast: invalid treecast.yaml']);
    expect(r.stderr).not.toContain(SECRET_TEXT.trim());
  });

  it.each([
    ['__proto__ at the top level', '__proto__: { publish: { dir: /etc } }\n', '1:1', '__proto__', '__proto__'],
    ['constructor under publish', 'publish:\n  url: http://x.example\n  constructor: { dir: /etc }\n', '3:3', 'publish.constructor', 'constructor'],
  ])('%s', (_name, config, lineCol, keyPath, key) => {
    const r = refused(config);
    expect(r.code).toBe(1);
    expect(lines(r.stderr)).toEqual([`treecast.yaml:${lineCol}: ${keyPath}: key "${key}" is not allowed (hint: ${RESERVED_HINT})`, 'treecast: invalid treecast.yaml']);
  });

  it('publish.dir inside the repository is fine; TREECAST_PUBLISH_DIR (the operator) may point anywhere', () => {
    const r = makeRepo({ prefix: 'input-policy-config', git: false, files: { 'treecast.yaml': 'publish: { dir: site/public }\n', 'tree/etc/hostname': 'x\n', 'images/a.yaml': manifest('a', '') } });
    repos.push(r);
    expect(r.cli(['validate']).code).toBe(0);
    expect(openRepo({ repo: r.dir }).publishDir).toBe(path.join(r.dir, 'site/public'));
    const outside = fs.mkdtempSync(path.join(os.tmpdir(), 'treecast-publish-env-'));
    const saved = process.env.TREECAST_PUBLISH_DIR;
    process.env.TREECAST_PUBLISH_DIR = outside;
    try {
      expect(openRepo({ repo: r.dir }).publishDir).toBe(outside);
      const v = r.cli(['validate']);
      expect(v.stderr).toBe('1 image manifest(s) valid\n');
    } finally {
      if (saved === undefined) delete process.env.TREECAST_PUBLISH_DIR;
      else process.env.TREECAST_PUBLISH_DIR = saved;
      fs.rmSync(outside, { recursive: true, force: true });
    }
  });
});

describe('in-repo symlinks build from their real path', () => {
  let b: Fixture;
  afterAll(() => b?.cleanup());

  it('a symlinked source file, overlay and tree base: treecast build succeeds and the content arrives in the image', () => {
    b = makeRepo({
      prefix: 'input-policy-build',
      files: {
        ...shellTree('tree', { kernel: false }),
        'tree-link': { symlink: 'tree' },
        'files/motd': 'hello through an in-repo link\n',
        'files/motd-link': { symlink: 'motd' },
        'overlays/ok/etc/issue': 'overlay through an in-repo link\n',
        'overlays/link-in': { symlink: 'ok' },
        'images/linked.yaml': 'name: linked\nbase: { source: tree, path: tree-link }\noverlays: [overlays/link-in]\nfiles:\n  - { path: /etc/motd, source: files/motd-link }\n',
      },
    });
    const [img] = b.build();
    expect(img!.name).toBe('linked');
    expect(ostreeCat(b.ostreeRepo, img!.commit, '/usr/etc/motd')).toBe('hello through an in-repo link\n');
    expect(ostreeCat(b.ostreeRepo, img!.commit, '/usr/etc/issue')).toBe('overlay through an in-repo link\n');
    expect(ostreeCat(b.ostreeRepo, img!.commit, '/usr/etc/hostname')).toBe('fixture\n');
  });
});
