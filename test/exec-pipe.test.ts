/**
 * runPipe with the real execa runner on more bytes than any buffer limit of
 * the exec wrapper (64 MiB): a Debian tarball is ~200 MiB. The tiny fixture
 * trees of the other tests never got near it; the boot test's edge-host did.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runPipe } from '../compiler/exec.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'treecast-pipe-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('runPipe', () => {
  it('streams 150 MiB from the first program through the second into the file, complete', async () => {
    const out = path.join(dir, 'out.bin');
    const bytes = 150 * 1024 * 1024;
    await runPipe(['head', ['-c', String(bytes), '/dev/zero']], ['cat', []], { stdoutFile: out, progress: false });
    expect(fs.statSync(out).size).toBe(bytes);
  }, 120_000);

  it('names the failing sink with its exit code', async () => {
    await expect(runPipe(['head', ['-c', '1000', '/dev/zero']], ['sh', ['-c', 'cat >/dev/null; echo sink-broke >&2; exit 7']], { stdoutFile: path.join(dir, 'x'), progress: false })).rejects.toThrow(/sh failed with exit code 7[\s\S]*sink-broke/);
  });
});
