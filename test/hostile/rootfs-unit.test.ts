/**
 * Every operation of compiler/compile/rootfs.ts against an image root full of
 * links that point at the build host (canaries outside the root): writes,
 * replaces, renames, removes, chmod/chown, reads and copies out all stay
 * inside the root, and no canary byte, mode or owner changes.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  chmodIn, copyDirWithinIn, copyFileIn, copyFileOut, emptyDirIn, isFileIn, lchownIn, mkdirInRoot, readFileIn,
  readdirIn, removeInRoot, removeSpecialFilesIn, renameIn, replaceWithLinkIn, symlinkIn, walkIn, writeFileIn,
} from '../../compiler/compile/rootfs.js';
import { makeCanaries, SECRET_TEXT, type Canaries } from './canary.js';

let tmp: string;
let root: string;
let c: Canaries;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'treecast-rootfs-unit-'));
  root = path.join(tmp, 'root');
  fs.mkdirSync(root);
  c = makeCanaries();
});
afterEach(() => {
  c.assertUnchanged();
  c.cleanup();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** Plant `imgPath -> target` in the root, as a hostile overlay or script would. */
const plant = (imgPath: string, target: string) => {
  fs.mkdirSync(path.dirname(path.join(root, imgPath)), { recursive: true });
  fs.symlinkSync(target, path.join(root, imgPath));
};
const up = (depth = 12) => '../'.repeat(depth).slice(0, -1);

describe('rootfs.ts: hostile links in the image never lead to the host', () => {
  it.each([
    ['absolute', () => c.nest],
    ['relative, climbing', () => `${up()}${c.nest}`],
  ])('writeFileIn through a %s directory link writes inside the root', (_kind, target) => {
    plant('/etc', target());
    writeFileIn(root, '/etc/passwd', 'image passwd\n', { mode: 0o644 });
    // The link re-rooted: <root><canary nest>/passwd, never the canary itself.
    expect(fs.readFileSync(path.join(root, c.nest, 'passwd'), 'utf8')).toBe('image passwd\n');
  });

  it('writeFileIn replaces a final link instead of writing through it', () => {
    fs.mkdirSync(path.join(root, 'etc'));
    fs.symlinkSync(c.secret, path.join(root, 'etc/machine-id'));
    writeFileIn(root, '/etc/machine-id', '', { mode: 0o444 });
    const st = fs.lstatSync(path.join(root, 'etc/machine-id'));
    expect(st.isFile()).toBe(true);
    expect(st.mode & 0o7777).toBe(0o444);
  });

  it('writeFileIn keeps setuid bits after the owner change', () => {
    writeFileIn(root, '/usr/bin/helper', '#!/bin/sh\n', { uid: 0, gid: 0, mode: 0o4755 });
    expect(fs.statSync(path.join(root, 'usr/bin/helper')).mode & 0o7777).toBe(0o4755);
  });

  it('readFileIn and copyFileOut follow links inside the root only', () => {
    plant('/usr/lib/modules/1/vmlinuz', c.secret);
    expect(isFileIn(root, '/usr/lib/modules/1/vmlinuz')).toBe(false);
    expect(() => readFileIn(root, '/usr/lib/modules/1/vmlinuz')).toThrow();
    expect(() => copyFileOut(root, '/usr/lib/modules/1/vmlinuz', path.join(tmp, 'out'))).toThrow();
    expect(fs.existsSync(path.join(tmp, 'out')) && fs.readFileSync(path.join(tmp, 'out'), 'utf8')).not.toBe(SECRET_TEXT);
    // The same link name re-rooted: a file at <root><secret> is what it leads to.
    fs.mkdirSync(path.dirname(path.join(root, c.secret)), { recursive: true });
    fs.writeFileSync(path.join(root, c.secret), 'image file\n');
    copyFileOut(root, '/usr/lib/modules/1/vmlinuz', path.join(tmp, 'out'));
    expect(fs.readFileSync(path.join(tmp, 'out'), 'utf8')).toBe('image file\n');
  });

  it('readFileIn refuses what is not a regular file (a fifo would block the build)', () => {
    fs.mkdirSync(path.join(root, 'etc'));
    const fifo = path.join(root, 'etc/passwd');
    execFileSync('mkfifo', [fifo]);
    expect(() => readFileIn(root, '/etc/passwd')).toThrow(/not a regular file/);
  });

  it('removeInRoot and emptyDirIn through links remove inside the root only', () => {
    plant('/etc', c.nest);
    plant('/run', c.dir);
    removeInRoot(root, '/etc/ssh/ssh_host_ed25519_key');
    removeInRoot(root, '/etc/machine-id');
    emptyDirIn(root, '/run', 0o1777);
    expect(fs.lstatSync(path.join(root, 'run')).isDirectory()).toBe(true);
    expect(fs.statSync(path.join(root, 'run')).mode & 0o7777).toBe(0o1777);
    expect(() => removeInRoot(root, '/')).toThrow(/image root/);
    expect(() => removeInRoot(root, '/..')).toThrow(/image root/);
  });

  it('renameIn never moves a host directory into the image, nor the image onto the host', () => {
    plant('/usr', c.dir);
    fs.mkdirSync(path.join(root, 'etc'));
    fs.writeFileSync(path.join(root, 'etc/hostname'), 'img\n');
    // emit's /usr/etc -> /etc in a checkout whose /usr leads "to the host"
    expect(() => renameIn(root, '/usr/etc', '/etc2')).toThrow(/ENOENT/);
    renameIn(root, '/etc', '/usr/etc');
    expect(fs.readFileSync(path.join(root, c.dir, 'etc/hostname'), 'utf8')).toBe('img\n');
  });

  it('chmodIn and lchownIn through links change only image entries', () => {
    plant('/home', c.nest);
    plant('/root', c.secret);
    mkdirInRoot(root, '/home/admin', 0o700);
    chmodIn(root, '/home/admin', 0o750);
    lchownIn(root, '/home/admin', 1000, 1000);
    lchownIn(root, '/root', 1000, 1000); // the link itself, never its target
    expect(() => chmodIn(root, '/root', 0o777)).toThrow(/does not exist in the image/);
    expect(fs.statSync(path.join(root, c.nest, 'admin')).uid).toBe(1000);
  });

  it('copyDirWithinIn copies and chowns links as links', () => {
    fs.mkdirSync(path.join(root, 'etc/skel'), { recursive: true });
    fs.symlinkSync(c.secret, path.join(root, 'etc/skel/.bashrc'));
    fs.symlinkSync(c.nest, path.join(root, 'etc/skel/nest'));
    fs.writeFileSync(path.join(root, 'etc/skel/.profile'), 'p\n');
    mkdirInRoot(root, '/home/u', 0o700);
    copyDirWithinIn(root, '/etc/skel', '/home/u', 1000, 1000);
    expect(fs.readlinkSync(path.join(root, 'home/u/.bashrc'))).toBe(c.secret);
    expect(fs.lstatSync(path.join(root, 'home/u/nest')).uid).toBe(1000);
    expect(fs.statSync(path.join(root, 'home/u/.profile')).uid).toBe(1000);
  });

  it('symlinkIn and replaceWithLinkIn put links inside the root', () => {
    plant('/etc/systemd/system', c.nest);
    symlinkIn(root, '/etc/systemd/system/apt-daily.timer', '/dev/null');
    expect(fs.readlinkSync(path.join(root, c.nest, 'apt-daily.timer'))).toBe('/dev/null');
    plant('/var', c.nest);
    replaceWithLinkIn(root, '/home', 'var/home');
    expect(fs.readlinkSync(path.join(root, 'home'))).toBe('var/home');
  });

  it('copyFileIn refuses a host source that is a link (inputs are checked real paths)', () => {
    const link = path.join(tmp, 'link');
    fs.symlinkSync(c.secret, link);
    expect(() => copyFileIn(root, link, '/etc/x')).toThrow(/ELOOP|symbolic/);
  });

  it('walkIn, readdirIn and removeSpecialFilesIn never leave the root', () => {
    plant('/srv', c.dir);
    fs.mkdirSync(path.join(root, 'dev'));
    execFileSync('mkfifo', [path.join(root, 'dev/fifo')]);
    expect(readdirIn(root, '/srv')).toEqual([]); // <root><canary dir> does not exist
    expect([...walkIn(root)].map(([p]) => p).sort()).toEqual(['/dev', '/dev/fifo', '/srv']);
    expect(removeSpecialFilesIn(root)).toBe(1);
  });
});
