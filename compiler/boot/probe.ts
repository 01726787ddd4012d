/**
 * The boot probe: how the test harness learns what a guest booted without
 * any test hook in the image. A dracut cmdline hook, packed as a one-file
 * cpio archive, is appended to the image's own initramfs (the kernel unpacks
 * concatenated archives in order); it installs a runtime unit under /run that
 * prints the marker line (probe/boot-marker.sh) once boot has finished.
 * Production images carry nothing of it; a host booted without the harness
 * never sees it.
 */
import { closeSync, copyFileSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../exec.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));

/**
 * The console lines the probe prints: failed units first, then the marker.
 * The state is optional so a console log of an older probe still parses.
 */
export const MARKER = /IMAGE-BOOTED-([0-9a-f]{64}|unknown) deployment=(ostree|live)(?: state=(\S+))?(?: host=(\S+))?/;
export const FAILED_UNIT = /TREECAST-FAILED-UNIT (\S+)/;

/** dracut sources every *.sh in its hook dirs, which it always creates (lib/ may be a link to usr/lib: the path resolves through it). */
const HOOK_PATH = 'lib/dracut/hooks/cmdline/99-treecast-probe.sh';

/** The hook's text: the marker script embedded in a here-document. */
export function probeHook(): string {
  const marker = readFileSync(path.join(HERE, 'probe/boot-marker.sh'), 'utf8').trimEnd();
  return readFileSync(path.join(HERE, 'probe/initramfs-hook.sh'), 'utf8').replace('@MARKER@', () => marker);
}

/**
 * Write `out`: the image's initramfs, zero-padded to 4 bytes (the kernel
 * looks for the next archive on a 4-byte boundary), then the probe archive.
 */
export async function withProbe(imageInitrd: string, out: string): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'treecast-probe-'));
  try {
    mkdirSync(path.join(dir, path.dirname(HOOK_PATH)), { recursive: true });
    writeFileSync(path.join(dir, HOOK_PATH), probeHook(), { mode: 0o644 });
    // Only the file itself: directory entries would fight the image's own lib -> usr/lib link.
    const cpio = await run('cpio', ['--create', '--format=newc', '--owner=0:0', '--quiet'], { cwd: dir, input: `${HOOK_PATH}\n`, binary: true });
    copyFileSync(imageInitrd, out);
    const pad = (4 - (statSync(out).size % 4)) % 4;
    const fd = openSync(out, 'a');
    try {
      writeSync(fd, Buffer.alloc(pad));
      writeSync(fd, cpio.stdoutBytes!);
    } finally {
      closeSync(fd);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
