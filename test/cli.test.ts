/**
 * The treecast command line as users run it: help, usage errors (exit 2),
 * doctor, and --repo pointing at a repository that is not treecast's own.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyFixtureRepo, lines, makeTempDir, removeDir, runCli, STACK_TRACE } from './helpers/cli.js';

describe('help', () => {
  it.each([['--help'], ['-h'], ['help']])('treecast %s lists the commands and global options (exit 0)', (flag) => {
    const r = runCli([flag]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Usage: treecast <command> [options]');
    expect(r.stdout).toMatch(/^ {2}validate +check image manifests/m);
    expect(r.stdout).toMatch(/^ {2}doctor +check that the programs/m);
    expect(r.stdout).toContain('--repo DIR');
    expect(r.stderr).toBe('');
  });

  it('treecast without a command prints the help but exits 2', () => {
    const r = runCli([]);
    expect(r.code).toBe(2);
    expect(r.stdout).toContain('Usage: treecast <command> [options]');
  });

  it('treecast validate --help (exit 0)', () => {
    const r = runCli(['validate', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Usage: treecast validate \[manifest\.\.\.\]/);
    expect(r.stdout).toContain('file:line:col');
    expect(r.stderr).toBe('');
  });

  it('treecast doctor -h (exit 0), without checking anything', () => {
    const r = runCli(['doctor', '-h']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Usage: treecast doctor\n/);
    expect(r.stdout).not.toMatch(/^ok /m);
  });

  it('treecast --version', () => {
    const r = runCli(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^treecast \d+\.\d+\.\d+\n$/);
  });
});

describe('usage errors exit 2 with one line, no stack', () => {
  it('unknown command', () => {
    const r = runCli(['frobnicate']);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    const out = lines(r.stderr);
    expect(out).toHaveLength(1);
    expect(out[0]).toMatch(/^treecast: unknown command "frobnicate" \(commands: (.+, )?validate, (.+, )?doctor(, .+)?\)$/);
  });

  it('unknown option', () => {
    const r = runCli(['validate', '--frobnicate']);
    expect(r.code).toBe(2);
    expect(lines(r.stderr)).toEqual(["treecast: Unknown option '--frobnicate' (see: treecast validate --help)"]);
    expect(r.stderr).not.toMatch(STACK_TRACE);
  });

  it('--repo without its value', () => {
    const r = runCli(['validate', '--repo']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^treecast: .*--repo.*\(see: treecast validate --help\)\n$/);
  });
});

describe('doctor', () => {
  it('--json reports the programs treecast drives, all installed here', () => {
    const r = runCli(['doctor', '--json']);
    const out = JSON.parse(r.stdout) as { ok: boolean; tools: { tool: string; purpose: string; path: string | null; package: string }[] };
    expect(r.code).toBe(0);
    expect(out.ok).toBe(true);
    const byTool = new Map(out.tools.map((t) => [t.tool, t]));
    for (const tool of ['ostree', 'mmdebstrap', 'mksquashfs', 'tar', 'git', 'bwrap']) {
      const t = byTool.get(tool);
      expect(t, tool).toBeDefined();
      expect(path.isAbsolute(t!.path ?? ''), `${tool} path`).toBe(true);
      expect(fs.existsSync(t!.path!)).toBe(true);
      expect(t!.purpose).not.toBe('');
    }
    expect(byTool.get('mksquashfs')!.package).toBe('squashfs-tools');
  });

  it('without --json, one line per program', () => {
    const r = runCli(['doctor']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^ok +ostree +\/\S+\/ostree +\(commits/m);
    expect(r.stdout).not.toContain('MISSING');
  });

  it('names the Debian package of a missing program', () => {
    // A PATH with nothing but sh (doctor looks programs up with `command -v`).
    const bin = makeTempDir('path');
    try {
      fs.symlinkSync('/bin/sh', path.join(bin, 'sh'));
      const r = runCli(['doctor', '--json'], { env: { PATH: bin } });
      expect(r.code).toBe(1);
      const out = JSON.parse(r.stdout) as { ok: boolean; tools: { tool: string; path?: string | null; package: string }[] };
      expect(out.ok).toBe(false);
      const ostree = out.tools.find((t) => t.tool === 'ostree');
      expect(ostree?.path ?? null).toBeNull();
      expect(ostree?.package).toBe('ostree');
      expect(out.tools.find((t) => t.tool === 'mksquashfs')?.package).toBe('squashfs-tools');
      const text = runCli(['doctor'], { env: { PATH: bin } });
      expect(text.code).toBe(1);
      expect(text.stdout).toMatch(/^MISSING ostree +apt-get install ostree/m);
      expect(text.stdout).toMatch(/^Install the missing programs: apt-get install .*\bsquashfs-tools\b/m);
    } finally {
      removeDir(bin);
    }
  });
});

describe('--repo: treecast works on any repository, from any directory', () => {
  let repo: string;
  let elsewhere: string;

  beforeAll(() => {
    repo = copyFixtureRepo('valid');
    elsewhere = makeTempDir('cwd');
  });
  afterAll(() => {
    removeDir(repo);
    removeDir(elsewhere);
  });

  it('validates the images of another repository (paths resolve against it, not the cwd)', () => {
    // overlays/extra and files/motd exist only in that repository.
    const r = runCli(['validate', '--repo', repo], { cwd: elsewhere });
    expect(r.stderr).toBe('2 image manifest(s) valid\n');
    expect(r.code).toBe(0);
  });

  it('--json names the images relative to that repository', () => {
    const r = runCli(['validate', '--json', '--repo', repo], { cwd: elsewhere });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      valid: true,
      images: [
        { name: 'hello-node', file: 'images/hello-node.yaml' },
        { name: 'hello', file: 'images/hello.yaml' },
      ],
      errors: [],
    });
  });

  it('a relative --repo resolves against the cwd', () => {
    const r = runCli(['validate', '--repo', path.relative(elsewhere, repo)], { cwd: elsewhere });
    expect(r.code).toBe(0);
  });

  it('without --repo, the nearest directory with treecast.yaml is the repository', () => {
    const r = runCli(['validate', '--json'], { cwd: path.join(repo, 'overlays/extra/etc') });
    expect(r.code).toBe(0);
    expect((JSON.parse(r.stdout) as { images: unknown[] }).images).toHaveLength(2);
  });

  it('errors in that repository are located relative to it', () => {
    const broken = copyFixtureRepo('valid');
    try {
      fs.rmSync(path.join(broken, 'files/motd'));
      const r = runCli(['validate', '--repo', broken], { cwd: elsewhere });
      expect(r.code).toBe(1);
      expect(lines(r.stderr)).toEqual([
        'images/hello.yaml:6:32: files[1].source: file "files/motd" does not exist in the repository (hint: source paths are relative to the repository root)',
        // hello-node derives from hello, which is now invalid.
        'images/hello-node.yaml:2:31: base.image: base image "hello" is not a valid image of this repository (hint: base.image names another image manifest of this repository)',
        '2 problem(s) found',
      ]);
    } finally {
      removeDir(broken);
    }
  });

  it('an invalid treecast.yaml is reported with its location', () => {
    const broken = copyFixtureRepo('valid');
    try {
      fs.writeFileSync(path.join(broken, 'treecast.yaml'), 'arch: x86-64\npublsh: {}\n');
      const r = runCli(['validate', '--repo', broken], { cwd: elsewhere });
      expect(r.code).toBe(1);
      const out = lines(r.stderr);
      expect(out).toContain('treecast.yaml:1:7: arch: must be one of "x86_64", "aarch64", not "x86-64" (did you mean "x86_64"?)');
      expect(out).toContain('treecast.yaml:2:1: publsh: unknown key "publsh" (did you mean "publish"?)');
      expect(out[out.length - 1]).toBe('treecast: invalid treecast.yaml');
      expect(r.stderr).not.toMatch(STACK_TRACE);
    } finally {
      removeDir(broken);
    }
  });

  it('a --repo that does not exist is an error, not a crash', () => {
    const r = runCli(['validate', '--repo', path.join(elsewhere, 'no-such-repo')], { cwd: elsewhere });
    expect([1, 2]).toContain(r.code);
    expect(r.stderr).toContain(`repository directory ${path.join(elsewhere, 'no-such-repo')} does not exist`);
    expect(r.stderr).not.toMatch(STACK_TRACE);
  });
});

describe('global options before the verb (treecast --repo DIR build, as with git and kubectl)', () => {
  let repo: string;
  let elsewhere: string;

  beforeAll(() => {
    repo = copyFixtureRepo('valid');
    elsewhere = makeTempDir('cwd');
  });
  afterAll(() => {
    removeDir(repo);
    removeDir(elsewhere);
  });

  it('--repo DIR and --json before the verb act as they do after it', () => {
    const before = runCli(['--repo', repo, '--json', 'validate'], { cwd: elsewhere });
    const after = runCli(['validate', '--json', '--repo', repo], { cwd: elsewhere });
    expect(before.code).toBe(0);
    expect(JSON.parse(before.stdout)).toEqual(JSON.parse(after.stdout));
    expect((JSON.parse(before.stdout) as { images: unknown[] }).images).toHaveLength(2);
  });

  it('--repo=DIR before the verb; the verb still takes its own options', () => {
    const r = runCli([`--repo=${repo}`, 'plan', '--json'], { cwd: elsewhere });
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toHaveProperty('affected');
  });

  it('--debug before the verb reaches it: a failure then shows its stack (without --debug it does not)', () => {
    const missing = path.join(elsewhere, 'no-such-repo');
    const withDebug = runCli(['--debug', '--repo', missing, 'validate'], { cwd: elsewhere });
    const without = runCli(['--repo', missing, 'validate'], { cwd: elsewhere });
    for (const r of [withDebug, without]) {
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`repository directory ${missing} does not exist`);
    }
    expect(withDebug.stderr).toMatch(/^\s+at .+\(.+:\d+:\d+\)$/m);
    expect(without.stderr).not.toMatch(STACK_TRACE);
  });

  it('treecast --debug --help still prints the main help (exit 0)', () => {
    const r = runCli(['--debug', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('treecast [--repo DIR] [--json] [--debug] <command> [options]');
  });

  it('an unknown global option before the verb is a usage error naming it (exit 2, one line)', () => {
    const r = runCli(['--frobnicate', 'validate']);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(lines(r.stderr)).toHaveLength(1);
    expect(r.stderr).toMatch(/^treecast: unknown global option "--frobnicate" before the command/);
    expect(r.stderr).not.toMatch(STACK_TRACE);
  });

  it('--repo without its value before the verb is a usage error (exit 2)', () => {
    for (const args of [['--repo'], ['--repo', '--json', 'validate']]) {
      const r = runCli(args);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/^treecast: .*--repo.*\n$/);
    }
  });
});
