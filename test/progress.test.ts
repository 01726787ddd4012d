/**
 * Issue #13 "Progress": a program run through the exec wrapper shows what it
 * is doing while it runs. Without a terminal, a plain line every interval
 * (10 s; TREECAST_PROGRESS_INTERVAL_MS shortens it here), with the label of
 * its scope, the elapsed time and its own progress (apt's Get:/Unpacking
 * counts, else its last line). On a terminal, a live line that is cleared when
 * the program ends. Quiet prints nothing, and `build --json` keeps stdout JSON.
 * Real programs (sh, sleep; the CLI with ostree): nothing is stubbed.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { run } from '../compiler/exec.js';
import { setQuiet } from '../compiler/log.js';
import { progressScope } from '../compiler/progress.js';
import { makeRepo, requireTool, shellTree, type Fixture } from './helpers/build-fixture.js';

const APT_LIKE = 'echo "Get:1 http://deb.debian.org/debian bookworm/main amd64 libc6 2.36-9 [2755 kB]"; echo "Get:2 http://deb.debian.org/debian bookworm/main amd64 bash 5.2.15-2 [1491 kB]"; echo "Unpacking libc6:amd64 (2.36-9) ..." >&2; sleep 1.2';

/** Everything written to stderr while `fn` runs, with stdout/stderr TTY-ness as given. */
async function stderrOf(tty: boolean, fn: () => Promise<unknown>): Promise<string> {
  const chunks: string[] = [];
  const spy = vi.spyOn(process.stderr, 'write').mockImplementation((c: string | Uint8Array) => {
    chunks.push(String(c));
    return true;
  });
  const saved = [process.stdout.isTTY, process.stderr.isTTY, process.stderr.columns];
  Object.defineProperty(process.stdout, 'isTTY', { value: tty, configurable: true });
  Object.defineProperty(process.stderr, 'isTTY', { value: tty, configurable: true });
  Object.defineProperty(process.stderr, 'columns', { value: 60, configurable: true });
  try {
    await fn();
  } finally {
    spy.mockRestore();
    Object.defineProperty(process.stdout, 'isTTY', { value: saved[0], configurable: true });
    Object.defineProperty(process.stderr, 'isTTY', { value: saved[1], configurable: true });
    Object.defineProperty(process.stderr, 'columns', { value: saved[2], configurable: true });
  }
  return chunks.join('');
}

describe('status lines of running programs', () => {
  beforeAll(() => {
    process.env.TREECAST_PROGRESS_INTERVAL_MS = '300';
  });
  afterAll(() => {
    delete process.env.TREECAST_PROGRESS_INTERVAL_MS;
  });
  afterEach(() => setQuiet(false));

  it('without a terminal: a plain line per interval with the scope label, elapsed seconds and apt-style package counts', async () => {
    const err = await stderrOf(false, () => progressScope('edge-host: base (debian)', () => run('sh', ['-c', APT_LIKE])));
    const lines = err.split('\n').filter((l) => l.startsWith('edge-host: base (debian) '));
    expect(lines.length, err).toBeGreaterThanOrEqual(2);
    expect(lines.at(-1)).toMatch(/^edge-host: base \(debian\) \d+ s: downloaded 2, unpacked 1 packages$/);
    expect(err).not.toMatch(/\x1b\[/); // no escape codes in a log
  });

  it('without a scope the label is the program; the status is its last output line', async () => {
    const err = await stderrOf(false, () => run('sh', ['-c', 'echo "I: extracting archives..." >&2; sleep 0.8']));
    expect(err).toMatch(/^sh \d+ s: I: extracting archives\.\.\.$/m);
  });

  it('quiet: nothing at all', async () => {
    setQuiet(true);
    expect(await stderrOf(false, () => run('sh', ['-c', APT_LIKE]))).toBe('');
  });

  it('on a terminal: a live line (cut to the width) after a second, redrawn in place and cleared when the program ends', async () => {
    const err = await stderrOf(true, () => progressScope('edge-host: a label long enough to be cut at sixty columns', () => run('sh', ['-c', APT_LIKE.replace('sleep 1.2', 'sleep 1.8')])));
    const frames = err.split('\r\x1b[J').filter(Boolean);
    expect(frames.length, JSON.stringify(err)).toBeGreaterThanOrEqual(1);
    for (const f of frames) expect(f.length).toBeLessThanOrEqual(59);
    expect(frames[0]).toMatch(/^edge-host: a label long enough to be cut at sixty columns \d/);
    expect(err.endsWith('\r\x1b[J'), 'cleared at the end').toBe(true);
    expect(err).not.toContain('\n');
  });
});

describe('build --json with status lines', () => {
  let fx: Fixture;
  beforeAll(() => {
    for (const tool of ['ostree', 'git', 'bwrap']) requireTool(tool);
    fx = makeRepo({ prefix: 'progress', files: { ...shellTree('trees/base'), 'images/p.yaml': 'name: p\nbase: { source: tree, path: trees/base }\n' } });
  });
  afterAll(() => fx?.cleanup());

  it('status lines go to stderr; stdout is exactly the JSON document', () => {
    const r = fx.cli(['build', '--json'], { env: { TREECAST_PROGRESS_INTERVAL_MS: '20' } });
    expect(r.code, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout) as { images: { name: string }[] };
    expect(doc.images.map((i) => i.name)).toEqual(['p']);
    expect(r.stderr).toMatch(/^\S.* \d+ s(: .*)?$/m);
    expect(r.stderr).not.toMatch(/\x1b\[/);
  });
});
