/**
 * `install-test --sysroot` must only pass when both sides name a real commit:
 * a hand-made sysroot whose default loader entry does not lead to a
 * deployment is refused before any disk image is made or QEMU started.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli, STACK_TRACE } from './helpers/cli.js';

const base = fs.mkdtempSync(path.join(os.tmpdir(), 'treecast-adopt-'));
afterAll(() => fs.rmSync(base, { recursive: true, force: true }));

describe('install-test --sysroot with a loader entry that names no commit', () => {
  it('is a user error (exit 1) naming the sysroot, and leaves no scratch dir behind', () => {
    const sysroot = path.join(base, 'sysroot');
    const entries = path.join(sysroot, 'boot/loader/entries');
    fs.mkdirSync(entries, { recursive: true });
    // What a half-finished `ostree admin deploy` or a hand-edited entry can leave: ostree= leads nowhere.
    fs.writeFileSync(path.join(entries, 'ostree-1-host.conf'), 'title host\nversion 1\nlinux /vmlinuz\ninitrd /initramfs.img\noptions root=LABEL=ostroot ostree=/ostree/boot.1/host/0000/0\n');
    const scratch = path.join(base, 'tmp');
    fs.mkdirSync(scratch);
    const r = runCli(['install-test', '--sysroot', sysroot, '--repo', base], { env: { TREECAST_TEST_TMP: scratch } });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${sysroot}: the default boot loader entry names no deployment commit`);
    expect(r.stderr).not.toMatch(STACK_TRACE);
    expect(fs.readdirSync(scratch)).toEqual([]);
  });
});
