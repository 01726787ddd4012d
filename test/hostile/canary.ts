/**
 * Canaries for the hostile-input tests: files with known contents outside the
 * repository and the cache, which hostile manifests aim their symlinks, `..`
 * and scripts at. A test snapshots them before a build and asserts afterwards
 * that not one byte, mode, owner or name changed (and nothing was added).
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'vitest';

export interface Canaries {
  /** Absolute directory holding the canaries (outside any repository). */
  dir: string;
  /** A secret file, mode 0600: what a hostile image would like to copy out. */
  secret: string;
  /** A directory with a file inside: what a hostile step would like to write into, move or chown. */
  nest: string;
  /** Every entry under `dir` with its content hash, mode, owner and type. */
  snapshot(): Map<string, string>;
  /** Fails the test when anything under `dir` differs from the snapshot taken at creation. */
  assertUnchanged(): void;
  cleanup(): void;
}

export const SECRET_TEXT = 'treecast-canary-secret: this must never appear in an image\n';

export function makeCanaries(): Canaries {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'treecast-canary-'));
  fs.chmodSync(dir, 0o755);
  const secret = path.join(dir, 'secret.txt');
  fs.writeFileSync(secret, SECRET_TEXT, { mode: 0o600 });
  const nest = path.join(dir, 'nest');
  fs.mkdirSync(nest, { mode: 0o755 });
  fs.writeFileSync(path.join(nest, 'passwd'), 'root:x:0:0:canary:/root:/bin/sh\n', { mode: 0o644 });
  fs.mkdirSync(path.join(nest, 'ssh'));
  fs.writeFileSync(path.join(nest, 'ssh', 'ssh_host_ed25519_key'), 'canary host key\n', { mode: 0o600 });
  fs.writeFileSync(path.join(nest, 'machine-id'), '0123456789abcdef0123456789abcdef\n');
  fs.mkdirSync(path.join(nest, 'modules', '9.9.9-canary'), { recursive: true });
  fs.writeFileSync(path.join(nest, 'modules', '9.9.9-canary', 'vmlinuz'), 'canary kernel\n', { mode: 0o600 });
  fs.writeFileSync(path.join(nest, 'modules', '9.9.9-canary', 'initramfs.img'), 'canary initramfs\n', { mode: 0o600 });
  const snapshot = () => {
    const out = new Map<string, string>();
    const walk = (p: string) => {
      const st = fs.lstatSync(p);
      const rel = path.relative(dir, p) || '.';
      let what = `${st.mode.toString(8)} ${st.uid}:${st.gid}`;
      if (st.isFile()) what += ` file ${createHash('sha256').update(fs.readFileSync(p)).digest('hex')}`;
      else if (st.isSymbolicLink()) what += ` link ${fs.readlinkSync(p)}`;
      else if (st.isDirectory()) {
        what += ' dir';
        for (const e of fs.readdirSync(p).sort()) walk(path.join(p, e));
      } else what += ' special';
      out.set(rel, what);
    };
    walk(dir);
    return out;
  };
  const before = snapshot();
  return {
    dir,
    secret,
    nest,
    snapshot,
    assertUnchanged() {
      expect(Object.fromEntries(snapshot())).toEqual(Object.fromEntries(before));
    },
    cleanup() {
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
