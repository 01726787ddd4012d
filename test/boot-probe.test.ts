/**
 * The boot probe (compiler/boot/probe.ts) without a VM: the appended archive
 * holds exactly the dracut hook, the image's initramfs bytes are untouched,
 * and the hook, run as dracut would source it (in a scratch /run), installs
 * a marker unit and script that systemd and sh accept. The boots in
 * test/boot.test.ts prove the rest (the marker line from a real guest).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FAILED_UNIT, MARKER, probeHook, withProbe } from '../compiler/boot/probe.js';
import { requireTool } from './helpers/build-fixture.js';

const work = mkdtempSync(path.join(os.tmpdir(), 'treecast-probe-test-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('boot probe', () => {
  it('appends one newc archive holding only the hook, on a 4-byte boundary, after the untouched image initramfs', async () => {
    requireTool('cpio');
    const image = path.join(work, 'image.img');
    writeFileSync(image, Buffer.from('not-really-an-initramfs-but-its-bytes-must-survive!')); // 51 bytes: needs padding
    const out = path.join(work, 'probed.img');
    await withProbe(image, out);
    const bytes = readFileSync(out);
    const orig = readFileSync(image);
    expect(bytes.subarray(0, orig.length).equals(orig)).toBe(true);
    const start = Math.ceil(orig.length / 4) * 4;
    expect(bytes.subarray(orig.length, start).every((b) => b === 0)).toBe(true);
    expect(bytes.subarray(start, start + 6).toString()).toBe('070701');
    const list = spawnSync('cpio', ['-t', '--quiet'], { input: bytes.subarray(start), encoding: 'utf8' });
    expect(list.status).toBe(0);
    expect(list.stdout.trim().split('\n')).toEqual(['lib/dracut/hooks/cmdline/99-treecast-probe.sh']);
  });

  it('the hook, sourced in a scratch /run, installs a marker unit wanted by multi-user.target and a script sh accepts', () => {
    requireTool('bwrap');
    const hook = path.join(work, 'hook.sh');
    writeFileSync(hook, probeHook());
    const run = path.join(work, 'run');
    mkdirSync(run);
    // A private /run bound to a scratch dir: exactly what dracut's sourcing would do, nowhere else.
    const r = spawnSync('bwrap', ['--ro-bind', '/', '/', '--bind', run, '/run', '--dev', '/dev', 'sh', '-ec', `. ${hook}`], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const unit = readFileSync(path.join(run, 'systemd/system/treecast-boot-marker.service'), 'utf8');
    expect(unit).toContain('ExecStart=/bin/sh /run/treecast/boot-marker');
    expect(unit).toContain('Type=simple');
    const wants = spawnSync('readlink', [path.join(run, 'systemd/system/multi-user.target.wants/treecast-boot-marker.service')], { encoding: 'utf8' });
    expect(wants.stdout.trim()).toBe('../treecast-boot-marker.service');
    const script = path.join(run, 'treecast/boot-marker');
    expect(readFileSync(script, 'utf8')).toBe(readFileSync('compiler/boot/probe/boot-marker.sh', 'utf8').trimEnd() + '\n');
    expect(spawnSync('sh', ['-n', script]).status).toBe(0);
    const verify = spawnSync('systemd-analyze', ['verify', '--man=no', path.join(run, 'systemd/system/treecast-boot-marker.service')], { encoding: 'utf8' });
    expect(verify.stderr).not.toMatch(/treecast-boot-marker\.service:\d+:/);
  });

  it('parses the marker with and without the state and the hostname, and failed units', () => {
    const c = 'a'.repeat(64);
    expect(`x IMAGE-BOOTED-${c} deployment=ostree state=degraded`.match(MARKER)!.slice(1)).toEqual([c, 'ostree', 'degraded', undefined]);
    expect(`IMAGE-BOOTED-${c} deployment=live state=running host=node1`.match(MARKER)!.slice(1)).toEqual([c, 'live', 'running', 'node1']);
    expect(`IMAGE-BOOTED-${c} deployment=live`.match(MARKER)![3]).toBeUndefined();
    expect(FAILED_UNIT.exec('TREECAST-FAILED-UNIT ssh.service')![1]).toBe('ssh.service');
  });
});
