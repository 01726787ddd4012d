/**
 * Bad input (issue "Foundation"): every fixture under test/fixtures/invalid/images
 * is wrong in exactly one way, and must give exactly one diagnostic at the
 * right file:line:col, with the right key path and a message a user can act on.
 *
 * The fixture repository is copied to a temp dir first, so that the cases that
 * cannot be committed sensibly (a non-UTF-8 file, a 50 MB manifest) are written
 * next to the others and every case runs against the same repository root.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatDiagnostic, formatLoc } from '../compiler/diagnostics.js';
import { validateAll } from '../compiler/images.js';
import { validateManifest } from '../compiler/manifest/validate.js';
import { LIMITS, parseYaml } from '../compiler/manifest/yaml.js';
import { openRepo, type Repo } from '../compiler/repo.js';
import { copyFixtureRepo, lines, makeTempDir, PROJECT_ROOT, removeDir, runCli, STACK_TRACE } from './helpers/cli.js';

interface Case {
  /** What is wrong. */
  name: string;
  /** Manifests validated together (relative to the fixture repository root). */
  files: string[];
  /** Expected location, file:line:col. */
  at: string;
  /** Expected key path ('' for whole-file problems). */
  path: string;
  message: string;
  hint?: string;
  /** Where the file holding the error was included from (`included from ...`). */
  via?: string;
  /** Names of the images that are valid nonetheless (cross-image cases). */
  valid?: string[];
}

const img = (f: string) => `images/${f}.yaml`;

const CASES: Case[] = [
  // --- YAML level -----------------------------------------------------------
  { name: 'YAML syntax error (unclosed flow list)', files: [img('yaml-syntax')], at: 'images/yaml-syntax.yaml:4:1', path: '', message: 'YAML syntax error: missed comma between flow collection entries', hint: 'inside the "[" opened at line 3, column 11: is its closing "]" or a "," between items missing?' },
  { name: 'tab indentation', files: [img('tab-indent')], at: 'images/tab-indent.yaml:3:1', path: '', message: 'YAML syntax error: tab characters must not be used in indentation', hint: 'YAML indentation must use spaces, not tabs' },
  { name: 'duplicate key', files: [img('duplicate-key')], at: 'images/duplicate-key.yaml:4:1', path: '', message: 'duplicated mapping key "packages"', hint: 'each key may appear once per map' },
  { name: 'empty file', files: [img('empty')], at: 'images/empty.yaml:1:1', path: '', message: 'file is empty', hint: 'a YAML map with at least a "name"' },
  { name: 'file with only comments', files: [img('comment-only')], at: 'images/comment-only.yaml:1:1', path: '', message: 'file is empty (it has only comments)' },
  { name: 'not UTF-8 (latin-1 "é")', files: [img('not-utf8')], at: 'images/not-utf8.yaml:4:13', path: '', message: 'file is not valid UTF-8 (byte 0xe9 at offset 62)', hint: 'save the manifest as UTF-8' },
  { name: 'top-level list instead of a map', files: [img('top-level-list')], at: 'images/top-level-list.yaml:1:3', path: '', message: 'a manifest must be a map of keys, not a list', hint: 'start with "name: ..."' },
  { name: 'alias bomb ("billion laughs")', files: [img('alias-bomb')], at: 'images/alias-bomb.yaml:9:31', path: '', message: `refused: document expands to more than ${LIMITS.nodes} values (alias bomb?)` },
  { name: '50 MB manifest', files: [img('huge')], at: 'images/huge.yaml:1:1', path: '', message: 'refused: file is 50.0 MiB, manifests are limited to 1 MiB' },
  // --- includes ---------------------------------------------------------------
  { name: 'include cycle a -> b -> a', files: [img('include-cycle')], at: 'images/common/cycle-b.yaml:3:11', path: 'include', message: 'include cycle: images/include-cycle.yaml -> images/common/cycle-b.yaml -> images/include-cycle.yaml', via: 'images/include-cycle.yaml:3:10' },
  { name: 'include of a missing file', files: [img('include-missing')], at: 'images/include-missing.yaml:4:5', path: 'include', message: 'included file "common/no-such-file.yaml" does not exist (looked for images/common/no-such-file.yaml)' },
  { name: 'include leaving the repository', files: [img('include-outside')], at: 'images/include-outside.yaml:3:10', path: 'include', message: 'include "../../shared/base.yaml" leaves the repository' },
  { name: 'schema error in an included file', files: [img('error-in-include')], at: 'images/common/bad-files.yaml:4:48', path: 'files[1].mode', message: 'must be an octal string such as "0644"', via: 'images/error-in-include.yaml:5:5' },
  { name: 'YAML syntax error in an included file', files: [img('syntax-in-include')], at: 'images/common/unclosed.yaml:5:1', path: '', message: 'YAML syntax error: missed comma', hint: 'opened at line 3, column 3', via: 'images/syntax-in-include.yaml:3:11' },
  // --- schema -------------------------------------------------------------------
  { name: 'unknown key with a near miss', files: [img('unknown-key')], at: 'images/unknown-key.yaml:3:1', path: 'pakages', message: 'unknown key "pakages" (did you mean "packages"?)' },
  { name: 'wrong type (string for a list)', files: [img('wrong-type')], at: 'images/wrong-type.yaml:3:11', path: 'packages', message: 'must be a list, not a string' },
  { name: 'wrong type (quoted uid)', files: [img('wrong-type-uid')], at: 'images/wrong-type-uid.yaml:5:10', path: 'users[0].uid', message: 'must be a whole number, not a string' },
  { name: 'empty value', files: [img('empty-value')], at: 'images/empty-value.yaml:3:1', path: 'packages', message: 'must be a list, not null (an empty value)' },
  { name: 'missing required name', files: [img('missing-name')], at: 'images/missing-name.yaml:1:1', path: '', message: 'missing required key "name"' },
  { name: 'invalid image name', files: [img('bad-name')], at: 'images/bad-name.yaml:1:7', path: 'name', message: "must be lower-case letters, digits, '.', '_' or '-'" },
  { name: 'mode as a YAML number (0644)', files: [img('mode-number')], at: 'images/mode-number.yaml:6:11', path: 'files[0].mode', message: 'must be an octal string such as "0644"', hint: 'quote it — YAML reads 0644 as a number: mode: "0644"' },
  { name: 'mode as a YAML octal number (0o755)', files: [img('mode-octal-literal')], at: 'images/mode-octal-literal.yaml:4:64', path: 'files[0].mode', message: 'must be an octal string', hint: 'YAML reads 0o755 as a number: mode: "0755"' },
  { name: 'mode "0999"', files: [img('mode-0999')], at: 'images/mode-0999.yaml:4:47', path: 'files[0].mode', message: 'must be an octal string such as "0644"', hint: 'octal digits are 0 to 7' },
  { name: 'owner neither name nor number', files: [img('owner-invalid')], at: 'images/owner-invalid.yaml:4:48', path: 'files[0].owner', message: 'must be a user/group name (lower-case letters, digits, \'_\', \'-\') or a numeric id' },
  { name: 'relative file path', files: [img('relative-path')], at: 'images/relative-path.yaml:4:13', path: 'files[0].path', message: "must be an absolute path inside the image, starting with '/'" },
  { name: 'both source and content', files: [img('source-and-content')], at: 'images/source-and-content.yaml:4:5', path: 'files[0]', message: 'needs exactly one of "source", "content" or "symlink"' },
  { name: 'invalid ref characters', files: [img('bad-ref')], at: 'images/bad-ref.yaml:2:6', path: 'ref', message: 'must be an OSTree ref' },
  { name: 'unknown base source "debain"', files: [img('base-source-typo')], at: 'images/base-source-typo.yaml:3:11', path: 'base.source', message: 'must be one of "debian", "tree", "image", not "debain" (did you mean "debian"?)' },
  { name: 'debian-only key on a tree base', files: [img('tree-with-suite')], at: 'images/tree-with-suite.yaml:5:3', path: 'base.suite', message: 'key "suite" is not allowed here', hint: 'it does not apply to base source "tree"' },
  { name: 'negative uid', files: [img('negative-uid')], at: 'images/negative-uid.yaml:4:23', path: 'users[0].uid', message: 'must be >= 0, not -1' },
  { name: 'unit name without a suffix', files: [img('unit-no-suffix')], at: 'images/unit-no-suffix.yaml:4:25', path: 'units.enable[1]', message: 'must be a systemd unit name with its type suffix, e.g. ssh.service' },
  { name: 'kernel argument with a newline', files: [img('kernel-arg-newline')], at: 'images/kernel-arg-newline.yaml:5:5', path: 'kernel-args[1]', message: 'must be one argument without spaces, quotes or newlines' },
  { name: 'invalid metadata key', files: [img('metadata-key')], at: 'images/metadata-key.yaml:5:3', path: 'metadata.cost center', message: 'invalid key "cost center"' },
  // --- semantic rules -------------------------------------------------------------
  { name: '".." escaping the image root', files: [img('dotdot-path')], at: 'images/dotdot-path.yaml:4:13', path: 'files[0].path', message: '"/etc/../../x" is not a normalized path (it has "..")', hint: 'paths may not climb out of the image root' },
  { name: 'the image root as a file path', files: [img('root-path')], at: 'images/root-path.yaml:4:13', path: 'files[0].path', message: '"/" is the image root, not a file path' },
  { name: 'two entries for one path', files: [img('duplicate-path')], at: 'images/duplicate-path.yaml:6:13', path: 'files[2].path', message: '"/etc/motd" is already declared by files[0]' },
  { name: 'mode on a symlink', files: [img('symlink-mode')], at: 'images/symlink-mode.yaml:6:11', path: 'files[0].mode', message: 'a symlink has no mode of its own' },
  { name: 'missing source file', files: [img('missing-source')], at: 'images/missing-source.yaml:4:32', path: 'files[0].source', message: 'file "files/no-such-file.txt" does not exist in the repository', hint: 'relative to the repository root' },
  { name: 'missing overlay directory', files: [img('missing-overlay')], at: 'images/missing-overlay.yaml:5:5', path: 'overlays[1]', message: 'directory "overlays/no-such-dir" does not exist in the repository' },
  { name: 'duplicate user names', files: [img('duplicate-user')], at: 'images/duplicate-user.yaml:6:13', path: 'users[2].name', message: 'user "admin" is already declared by users[0]' },
  { name: 'user in an undeclared group', files: [img('undeclared-group')], at: 'images/undeclared-group.yaml:6:46', path: 'users[0].groups[2]', message: 'group "wheel" is not declared', hint: 'add it under groups:' },
  { name: 'unit both enabled and masked', files: [img('unit-conflict')], at: 'images/unit-conflict.yaml:5:10', path: 'units.mask[0]', message: 'unit "ssh.service" is already listed under enable' },
  { name: 'diskless output without a kernel', files: [img('diskless-no-kernel')], at: 'images/diskless-no-kernel.yaml:6:3', path: 'outputs.diskless', message: 'a diskless output needs a kernel', hint: 'add linux-image-amd64 to packages' },
  { name: 'tree base with packages', files: [img('tree-with-packages')], at: 'images/tree-with-packages.yaml:3:1', path: 'packages', message: 'packages need a Debian base (base.source: debian)' },
  // --- across images -----------------------------------------------------------------
  { name: 'base image that does not exist', files: [img('base-image-missing')], at: 'images/base-image-missing.yaml:2:31', path: 'base.image', message: 'base image "no-such-image" is not a valid image of this repository', valid: ['base-image-missing'] },
  { name: 'two images with one name', files: [img('same-name-a'), img('same-name-b')], at: 'images/same-name-b.yaml:2:1', path: 'name', message: 'image name "same-name" is also used by images/same-name-a.yaml', valid: ['same-name', 'same-name'] },
];

let repoDir: string;
let repo: Repo;

/** Latin-1 "é" (0xe9) on line 4, column 13, at byte offset 62. */
const NOT_UTF8 = Buffer.concat([Buffer.from('name: not-utf8\nbase: { source: debian }\nmetadata:\n  owner: Ren'), Buffer.from([0xe9]), Buffer.from('\n')]);

/** A syntactically fine 50 MiB manifest: a huge package list. */
function writeHugeManifest(file: string, size = 50 * 1024 * 1024): void {
  const fd = fs.openSync(file, 'w');
  try {
    const head = Buffer.from('name: huge\nbase: { source: debian }\npackages:\n');
    fs.writeSync(fd, head);
    const chunk = Buffer.from(Array.from({ length: 4096 }, (_, i) => `  - package-${String(i).padStart(6, '0')}\n`).join(''));
    let written = head.length;
    while (written + chunk.length <= size) written += fs.writeSync(fd, chunk);
    fs.writeSync(fd, Buffer.from(`#${'x'.repeat(size - written - 2)}\n`));
  } finally {
    fs.closeSync(fd);
  }
}

beforeAll(() => {
  repoDir = copyFixtureRepo('invalid');
  fs.writeFileSync(path.join(repoDir, 'images/not-utf8.yaml'), NOT_UTF8);
  writeHugeManifest(path.join(repoDir, 'images/huge.yaml'));
  repo = openRepo({ repo: repoDir });
});

afterAll(() => removeDir(repoDir));

describe('invalid manifests: one located diagnostic each', () => {
  it.each(CASES)('$name', (c) => {
    const { images, diagnostics } = validateAll(repo, c.files.map((f) => path.join(repoDir, f)));
    expect(diagnostics.map(formatDiagnostic)).toHaveLength(1);
    const d = diagnostics[0]!;
    expect(d.loc).toBeDefined();
    expect(formatLoc(d.loc!)).toBe(c.at);
    expect(d.path ?? '').toBe(c.path);
    expect(d.message).toContain(c.message);
    if (c.hint) expect(d.hint).toContain(c.hint);
    if (c.via) {
      expect(d.loc!.via?.map(formatLoc)).toEqual([c.via]);
      expect(formatDiagnostic(d)).toContain(`[included from ${c.via}]`);
    } else {
      expect(d.loc!.via).toBeUndefined();
    }
    expect(images.map((i) => i.manifest.name)).toEqual(c.valid ?? []);
    // One line, starting with the location: what editors and CI annotations parse.
    const text = formatDiagnostic(d);
    expect(text).not.toContain('\n');
    expect(text.startsWith(`${c.at}: ${c.path ? `${c.path}: ` : ''}${d.message}`)).toBe(true);
  });

  it('covers every fixture manifest, and the fixture repository has at least 32 cases', () => {
    const onDisk = fs.readdirSync(path.join(repoDir, 'images')).filter((f) => f.endsWith('.yaml')).map((f) => `images/${f}`);
    const covered = new Set(CASES.flatMap((c) => c.files));
    expect(onDisk.filter((f) => !covered.has(f))).toEqual([]);
    expect([...covered].filter((f) => !onDisk.includes(f))).toEqual([]);
    expect(CASES.length).toBeGreaterThanOrEqual(32);
  });

  it('validateManifest() returns the problem as data, with every file it read', () => {
    const r = validateManifest(path.join(repoDir, img('error-in-include')), repoDir);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.file).toBe(path.join(repoDir, img('error-in-include')));
    expect(r.files.map((f) => path.relative(repoDir, f))).toEqual(['images/error-in-include.yaml', 'images/common/ok-packages.yaml', 'images/common/bad-files.yaml']);
    expect(r.diagnostics.map(formatDiagnostic)).toEqual([
      'images/common/bad-files.yaml:4:48: files[1].mode: must be an octal string such as "0644" [included from images/error-in-include.yaml:5:5]',
    ]);
  });

  it('the include cycle is detected once, not followed', () => {
    const r = validateManifest(path.join(repoDir, img('include-cycle')), repoDir);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.files.map((f) => path.relative(repoDir, f))).toEqual(['images/include-cycle.yaml', 'images/common/cycle-b.yaml']);
  });
});

describe('hostile input is refused quickly', () => {
  it('the alias bomb in under a second', () => {
    const start = performance.now();
    const r = validateManifest(path.join(repoDir, img('alias-bomb')), repoDir);
    const seconds = (performance.now() - start) / 1000;
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.diagnostics[0]!.message).toMatch(/^refused: document expands to more than \d+ values \(alias bomb\?\)$/);
    expect(seconds).toBeLessThan(1);
  });

  it('a deeper alias bomb (10^30 values) just as quickly', () => {
    const levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
    for (let i = 1; i < 30; i++) levels.push(`l${i}: &l${i} [${Array(10).fill(i === 1 ? '*a' : `*l${i - 1}`).join(',')}]`);
    const start = performance.now();
    const r = parseYaml(levels.join('\n') + '\n', 'bomb.yaml');
    expect(performance.now() - start).toBeLessThan(1000);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.diagnostics[0]!.message).toContain('alias bomb');
  });

  it('the 50 MB manifest by its size, before parsing it', () => {
    const file = path.join(repoDir, img('huge'));
    expect(fs.statSync(file).size).toBe(50 * 1024 * 1024);
    const start = performance.now();
    const r = validateManifest(file, repoDir);
    const seconds = (performance.now() - start) / 1000;
    expect(r.ok).toBe(false);
    // Had it been read and parsed, the 200k-item list would hit the node limit instead.
    if (!r.ok) expect(r.diagnostics.map((d) => d.message)).toEqual(['refused: file is 50.0 MiB, manifests are limited to 1 MiB']);
    expect(seconds).toBeLessThan(1);
  });

  it('a large manifest within the limits is located in linear time (was quadratic: 30+ s)', () => {
    const file = path.join(repoDir, 'images/large-ok.yaml');
    const packages = Array.from({ length: 45_000 }, (_, i) => `  - pkg${i}`).join('\n');
    fs.writeFileSync(file, `name: large-ok\nbase: { source: debian }\npackages:\n${packages}\n  - Bad_Name\n`);
    try {
      expect(fs.statSync(file).size).toBeLessThan(LIMITS.bytes);
      const start = performance.now();
      const r = validateManifest(file, repoDir);
      expect((performance.now() - start) / 1000).toBeLessThan(5);
      expect(r.ok).toBe(false);
      // ...and the location of the one bad item at its very end is still exact.
      if (!r.ok) expect(r.diagnostics.map(formatDiagnostic)).toEqual(['images/large-ok.yaml:45004:5: packages[45000]: must be a Debian package name, optionally with :arch and =version']);
    } finally {
      fs.rmSync(file);
    }
  });

  it('too many values without aliases: refused without blaming aliases', () => {
    const text = `name: many\nbase: { source: debian }\npackages:\n${Array.from({ length: 60_000 }, (_, i) => `  - p${i}`).join('\n')}\n`;
    expect(Buffer.byteLength(text)).toBeLessThan(LIMITS.bytes);
    const r = parseYaml(text, 'many.yaml');
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.diagnostics[0]!.message).toBe(`refused: document has more than ${LIMITS.nodes} values`);
      expect(r.diagnostics[0]!.loc!.line).toBeGreaterThan(3);
    }
  });

  it('deep nesting', () => {
    const r = parseYaml('a: '.repeat(1) + '['.repeat(200) + ']'.repeat(200) + '\n', 'deep.yaml');
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.diagnostics[0]!.message).toMatch(/^refused: document (nesting deeper than \d+ levels|too deeply nested)/);
  });
});

describe('mangled manifests never crash the validator', () => {
  it('random edits of the examples give located diagnostics inside the file, never an exception', () => {
    const dir = makeTempDir('mangled');
    try {
      for (const d of ['images', 'overlays', 'files']) fs.cpSync(path.join(PROJECT_ROOT, d), path.join(dir, d), { recursive: true });
      let seed = 20260101;
      const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
      const noise = ' \n\t:-[]{}&*!|>"\'#,?%@`0aZ\\é';
      const file = path.join(dir, 'images/mangled.yaml');
      let invalid = 0;
      for (const example of ['edge-host.yaml', 'tiny.yaml', 'diskless-node.yaml']) {
        const original = fs.readFileSync(path.join(PROJECT_ROOT, 'images', example), 'utf8');
        for (let k = 0; k < 150; k++) {
          let text = original;
          for (let m = 0; m < 1 + Math.floor(rnd() * 3); m++) {
            const pos = Math.floor(rnd() * text.length);
            const op = rnd();
            if (op < 0.4) text = text.slice(0, pos) + text.slice(pos + 1 + Math.floor(rnd() * 5));
            else if (op < 0.8) text = text.slice(0, pos) + noise[Math.floor(rnd() * noise.length)] + text.slice(pos);
            else {
              const from = Math.floor(rnd() * text.length);
              text = text.slice(0, pos) + text.slice(from, from + 20) + text.slice(pos);
            }
          }
          fs.writeFileSync(file, text);
          const r = validateManifest(file, dir); // must not throw
          if (r.ok) continue;
          invalid++;
          const fileLines = text.split('\n');
          for (const d of r.diagnostics) {
            expect(d.message, text).not.toBe('');
            expect(d.loc, formatDiagnostic(d)).toBeDefined();
            if (d.loc?.file !== 'images/mangled.yaml') continue;
            expect(d.loc.line, `${formatDiagnostic(d)}\n${text}`).toBeGreaterThanOrEqual(1);
            expect(d.loc.line, `${formatDiagnostic(d)}\n${text}`).toBeLessThanOrEqual(fileLines.length);
            expect(d.loc.col, `${formatDiagnostic(d)}\n${text}`).toBeGreaterThanOrEqual(1);
            expect(d.loc.col, `${formatDiagnostic(d)}\n${text}`).toBeLessThanOrEqual(fileLines[d.loc.line - 1]!.length + 1);
          }
        }
      }
      expect(invalid).toBeGreaterThan(100); // the edits did break most of them
    } finally {
      removeDir(dir);
    }
  });
});

describe('through the CLI: one line per problem on stderr, exit 1, no stack trace', () => {
  const ONE_LINERS: [string, string][] = [
    ['mode-number', 'images/mode-number.yaml:6:11: files[0].mode: must be an octal string such as "0644" (hint: quote it — YAML reads 0644 as a number: mode: "0644")'],
    ['error-in-include', 'images/common/bad-files.yaml:4:48: files[1].mode: must be an octal string such as "0644" [included from images/error-in-include.yaml:5:5]'],
    ['not-utf8', 'images/not-utf8.yaml:4:13: file is not valid UTF-8 (byte 0xe9 at offset 62) (hint: save the manifest as UTF-8)'],
    ['unknown-key', 'images/unknown-key.yaml:3:1: pakages: unknown key "pakages" (did you mean "packages"?)'],
    ['duplicate-key', 'images/duplicate-key.yaml:4:1: YAML syntax error: duplicated mapping key "packages" (hint: each key may appear once per map)'],
    ['alias-bomb', 'images/alias-bomb.yaml:9:31: refused: document expands to more than 100000 values (alias bomb?) (hint: manifests should not need deep nesting or repeated aliases)'],
    ['huge', 'images/huge.yaml:1:1: refused: file is 50.0 MiB, manifests are limited to 1 MiB'],
  ];

  it.each(ONE_LINERS)('%s', (name, expected) => {
    // Relative manifest path, run from the repository root (like CI does).
    const r = runCli(['validate', img(name)], { cwd: repoDir });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(lines(r.stderr)).toEqual([expected, '1 problem(s) found']);
    expect(r.stderr).not.toMatch(STACK_TRACE);
  });

  it('the whole fixture repository: every problem reported in one run', () => {
    const r = runCli(['validate', '--repo', repoDir], { cwd: PROJECT_ROOT });
    expect(r.code).toBe(1);
    const out = lines(r.stderr);
    expect(out[out.length - 1]).toBe(`${CASES.length} problem(s) found`);
    const problems = out.slice(0, -1);
    expect(problems).toHaveLength(CASES.length);
    for (const p of problems) expect(p).toMatch(/^images\/[\w/.-]+\.yaml:\d+:\d+: \S/);
    for (const c of CASES) expect(problems.some((p) => p.startsWith(`${c.at}: `) && p.includes(c.message))).toBe(true);
    expect(r.stderr).not.toMatch(STACK_TRACE);
  });

  it('--json reports the same problems as data on stdout', () => {
    const r = runCli(['validate', '--json', '--repo', repoDir, path.join(repoDir, img('error-in-include')), path.join(repoDir, img('mode-number'))]);
    expect(r.code).toBe(1);
    const out = JSON.parse(r.stdout) as { valid: boolean; images: unknown[]; errors: Record<string, unknown>[] };
    expect(out.valid).toBe(false);
    expect(out.images).toEqual([]);
    expect(out.errors).toHaveLength(2);
    expect(out.errors[0]).toMatchObject({
      file: 'images/common/bad-files.yaml',
      line: 4,
      col: 48,
      path: 'files[1].mode',
      message: 'must be an octal string such as "0644"',
      includedFrom: ['images/error-in-include.yaml:5:5'],
    });
    expect(out.errors[1]).toMatchObject({ file: 'images/mode-number.yaml', line: 6, col: 11, path: 'files[0].mode', hint: expect.stringContaining('quote it') });
    expect(out.errors[1]!.text).toBe(ONE_LINERS[0]![1]);
  });

  it('a manifest path that does not exist', () => {
    const r = runCli(['validate', '--repo', repoDir, path.join(repoDir, 'images/no-such.yaml')]);
    expect(r.code).toBe(1);
    expect(lines(r.stderr)).toEqual(['images/no-such.yaml: no such manifest file', '1 problem(s) found']);
  });
});

describe('the examples in images/ are valid', () => {
  const examples = fs
    .readdirSync(path.join(PROJECT_ROOT, 'images'))
    .filter((f) => /\.ya?ml$/.test(f))
    .map((f) => `images/${f}`)
    .sort();

  it('there are examples to check', () => {
    expect(examples.length).toBeGreaterThanOrEqual(3);
  });

  it('treecast validate exits 0', () => {
    const r = runCli(['validate', '--repo', PROJECT_ROOT]);
    expect(r.stderr).toBe(`${examples.length} image manifest(s) valid, 2 node(s) in nodes.yaml\n`);
    expect(r.code).toBe(0);
  });

  it('treecast validate --json: {valid, images, errors}', () => {
    const r = runCli(['validate', '--json', '--repo', PROJECT_ROOT, ...examples]);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(Object.keys(out).sort()).toEqual(['errors', 'images', 'valid']);
    expect(out.valid).toBe(true);
    expect(out.errors).toEqual([]);
    const images = out.images as { name: string; file: string }[];
    expect(images.map((i) => i.file).sort()).toEqual(examples);
    for (const i of images) {
      expect(Object.keys(i).sort()).toEqual(['file', 'name']);
      expect(i.name).toMatch(/^[a-z0-9][a-z0-9._-]*$/);
    }
    expect(new Set(images.map((i) => i.name)).size).toBe(images.length);
  });

  it('in-process validateAll() agrees', () => {
    const root = openRepo({ repo: PROJECT_ROOT });
    const { images, diagnostics } = validateAll(root, examples.map((f) => path.join(PROJECT_ROOT, f)));
    expect(diagnostics.map(formatDiagnostic)).toEqual([]);
    expect(images.map((i) => i.shown).sort()).toEqual(examples);
  });
});

describe('found by the parser fuzz (test/reliability/fuzz.test.ts): located errors, not crashes', () => {
  /** Validates `text` as images/<name>.yaml of the fixture repository; returns the diagnostics as printed. */
  function check(name: string, text: string | Buffer): string[] {
    const file = path.join(repoDir, `images/${name}.yaml`);
    fs.writeFileSync(file, text);
    try {
      const r = validateManifest(file, repoDir); // threw a TypeError / ENAMETOOLONG before the fix
      expect(r.ok).toBe(false);
      return r.ok ? [] : r.diagnostics.map(formatDiagnostic);
    } finally {
      fs.rmSync(file);
    }
  }

  it('a NUL byte in an include path', () => {
    // fs calls throw ERR_INVALID_ARG_VALUE (a TypeError) on NUL: exit 3 with a stack.
    expect(check('nul-include', '{include: ["\\0"]}\n')).toEqual(['images/nul-include.yaml:1:12: include: include "\0" contains a NUL byte (\\0) (hint: no file name can hold one)']);
  });

  it('a NUL byte in overlay, source and script paths', () => {
    const text = 'name: nul\nbase: { source: debian }\noverlays: ["overlays/\\0"]\nfiles: [{ path: /etc/x, source: "files/a\\0b" }]\npostprocess-script: "\\0"\n';
    expect(check('nul-paths', text)).toEqual([
      'images/nul-paths.yaml:3:12: overlays[0]: "overlays/\0" contains a NUL byte (\\0) (hint: no file name can hold one)',
      'images/nul-paths.yaml:5:21: postprocess-script: "\0" contains a NUL byte (\\0) (hint: no file name can hold one)',
      'images/nul-paths.yaml:4:33: files[0].source: "files/a\0b" contains a NUL byte (\\0) (hint: no file name can hold one)',
    ]);
  });

  it('a path component longer than the file system allows (ENAMETOOLONG)', () => {
    const long = 'x'.repeat(300);
    expect(check('long-overlay', `name: long\nbase: { source: debian }\noverlays: [overlays/${long}]\n`)).toEqual([
      `images/long-overlay.yaml:3:12: overlays[0]: "overlays/${long}" is too long a path for the file system (ENAMETOOLONG)`,
    ]);
    expect(check('long-include', `include: [${long}.yaml]\nname: long\n`)).toEqual([`images/long-include.yaml:1:11: include: include "${long}.yaml" is too long a path for the file system (ENAMETOOLONG)`]);
  });

  it('a YAML error in a file with lone CR line breaks is located within the file', () => {
    // js-yaml counts "\r" as a line break, every other location counts "\n": it said line 5 of a one-line file.
    const [d] = check('cr-only', 'name: cr\rbase: {\rpackages: [a\r');
    expect(d).toMatch(/^images\/cr-only\.yaml:1:\d+: YAML syntax error: /);
  });

  it('an alias inside the node its anchor names (a cycle)', () => {
    // js-yaml returns a cyclic object: locating it recursed until "Maximum call stack size exceeded".
    expect(check('alias-cycle', 'name: cyc\nbase: { source: debian }\nmetadata: &m\n  self: *m\n')).toEqual(['images/alias-cycle.yaml:4:9: refused: this alias is inside the node its anchor names (a cycle) (hint: an alias may only repeat a node that is complete before it)']);
    expect(check('alias-cycle-flow', 'name: cyc\nbase: { source: debian }\npackages: &p [a, [b, *p]]\n')).toEqual(['images/alias-cycle-flow.yaml:3:22: refused: this alias is inside the node its anchor names (a cycle) (hint: an alias may only repeat a node that is complete before it)']);
  });

  it('a list or map used as a key', () => {
    // js-yaml makes the key the string "[object Object]" (or "a,b"), which the unknown-key message then showed.
    expect(check('complex-key', 'name: ck\nbase: { source: debian }\n? { a: b }\n: c\n')).toEqual(['images/complex-key.yaml:3:3: a key must be a single value, not a map (hint: keys are plain names such as "packages")']);
    expect(check('complex-key-list', 'name: ck\nbase: { source: debian }\n[a, b]: c\n')).toEqual(['images/complex-key-list.yaml:3:1: a key must be a single value, not a list (hint: keys are plain names such as "packages")']);
  });
});

describe('treecast.yaml: every key is optional', () => {
  it('an empty or comments-only treecast.yaml is the defaults, not an "empty file" error', () => {
    const dir = makeTempDir('config-comments');
    try {
      for (const text of ['', '\n', '# publish: { url: https://images.example.com }\n  # retention: { keep: 3 }\n']) {
        fs.writeFileSync(path.join(dir, 'treecast.yaml'), text);
        const r = openRepo({ repo: dir });
        expect(r.config, JSON.stringify(text)).toEqual({});
        expect(r.publishDir).toBe(process.env.TREECAST_PUBLISH_DIR ? path.resolve(process.env.TREECAST_PUBLISH_DIR) : path.join(dir, 'public'));
      }
      // Something that is not a map is still refused, located.
      fs.writeFileSync(path.join(dir, 'treecast.yaml'), '# a comment\n- a list\n');
      expect(() => openRepo({ repo: dir })).toThrow(/invalid treecast\.yaml/);
    } finally {
      removeDir(dir);
    }
  });
});
