/**
 * Rules JSON Schema cannot express: paths that must exist in the repository,
 * image paths that must be normalized and unique, users and groups that must
 * agree, and a kernel wherever a boot needs one. Runs only on schema-valid input.
 */
import path from 'node:path';
import type { Diagnostic } from '../diagnostics.js';
import { keyPath } from '../diagnostics.js';
import { isNormalizedAbsolute, type RepoDirs } from '../paths.js';
import { resolveManifestPath } from './load.js';
import type { ImageManifest } from './types.js';
import { locate } from './schema.js';
import type { LNode } from './yaml.js';

/** Groups every Debian base has (base-passwd, systemd), so users may join them without declaring them. */
export const DEBIAN_GROUPS = new Set(
  'root daemon bin sys adm tty disk lp mail news uucp man proxy kmem dialout fax voice cdrom floppy tape sudo audio dip www-data backup operator list irc src shadow utmp video sasl plugdev staff games users nogroup systemd-journal input kvm render sgx netdev _ssh'.split(' '),
);

export function hasKernel(m: ImageManifest): boolean {
  return (m.packages ?? []).some((p) => /^linux-image-/.test(p));
}

/** `repo`: its root, plus the cache, publish and signing dirs no input may reach (the input policy, compiler/paths.ts). */
export function checkSemantics(m: ImageManifest, root: LNode, repo: RepoDirs): Diagnostic[] {
  const out: Diagnostic[] = [];
  const at = (segs: (string | number)[], message: string, hint?: string, which: 'value' | 'key' = 'value') =>
    out.push({ loc: locate(root, segs, which), path: keyPath(segs), message, hint });

  const repoFile = (segs: (string | number)[], rel: string, kind: 'file' | 'directory') => {
    const r = resolveManifestPath(repo, rel, kind);
    if (r.ok) return;
    if (r.code === 'missing') {
      return at(segs, `${kind} "${rel}" does not exist in the repository`, kind === 'directory' ? 'overlay paths are relative to the repository root' : 'source paths are relative to the repository root');
    }
    at(segs, `"${rel}" ${r.reason}`, r.hint);
  };

  (m.overlays ?? []).forEach((o, i) => repoFile(['overlays', i], o, 'directory'));
  if (m['postprocess-script']) repoFile(['postprocess-script'], m['postprocess-script'], 'file');
  if (m.base.source === 'tree' && m.base.path) repoFile(['base', 'path'], m.base.path, 'directory');
  if (m.base.source === 'image' && m.base.image === m.name) at(['base', 'image'], 'an image cannot be its own base');

  const seenPaths = new Map<string, number>();
  (m.files ?? []).forEach((f, i) => {
    if (!isNormalizedAbsolute(f.path) || f.path === '/') {
      const norm = path.posix.normalize(f.path);
      if (norm === '/') {
        at(['files', i, 'path'], `"${f.path}" is the image root, not a file path`, 'name the file, e.g. /etc/motd');
      } else if (!path.posix.resolve('/', f.path).startsWith('/') || f.path.split('/').includes('..')) {
        at(['files', i, 'path'], `"${f.path}" is not a normalized path (it has "..")`, `paths may not climb out of the image root; write ${path.posix.resolve('/', f.path)}`);
      } else {
        at(['files', i, 'path'], `"${f.path}" is not a normalized file path`, `write ${norm.replace(/\/$/, '') || '/'}`);
      }
    }
    const prev = seenPaths.get(f.path);
    if (prev !== undefined) at(['files', i, 'path'], `"${f.path}" is already declared by files[${prev}]`, 'declare each path once');
    else seenPaths.set(f.path, i);
    if (f.source !== undefined) repoFile(['files', i, 'source'], f.source, 'file');
    if (f.symlink !== undefined && f.mode !== undefined) at(['files', i, 'mode'], 'a symlink has no mode of its own', 'remove mode');
    if (f.mode !== undefined && /^0?[0-7]{3,4}$/.test(f.mode) && parseInt(f.mode, 8) > 0o7777) at(['files', i, 'mode'], 'mode has more than 12 permission bits');
  });

  const groupNames = new Map<string, number>();
  const gids = new Map<number, number>();
  (m.groups ?? []).forEach((g, i) => {
    if (groupNames.has(g.name)) at(['groups', i, 'name'], `group "${g.name}" is already declared by groups[${groupNames.get(g.name)}]`);
    else groupNames.set(g.name, i);
    if (g.gid !== undefined) {
      if (gids.has(g.gid)) at(['groups', i, 'gid'], `gid ${g.gid} is already used by groups[${gids.get(g.gid)}]`);
      else gids.set(g.gid, i);
    }
  });
  const userNames = new Map<string, number>();
  const uids = new Map<number, number>();
  const knownGroup = (g: string) => groupNames.has(g) || (m.base.source !== 'tree' && DEBIAN_GROUPS.has(g)) || userNames.has(g);
  (m.users ?? []).forEach((u, i) => {
    if (userNames.has(u.name)) at(['users', i, 'name'], `user "${u.name}" is already declared by users[${userNames.get(u.name)}]`);
    else userNames.set(u.name, i);
    if (u.uid !== undefined) {
      if (uids.has(u.uid)) at(['users', i, 'uid'], `uid ${u.uid} is already used by users[${uids.get(u.uid)}]`);
      else uids.set(u.uid, i);
    }
    (u.groups ?? []).forEach((g, j) => {
      if (!knownGroup(g)) {
        at(['users', i, 'groups', j], `group "${g}" is not declared`, `add it under groups: or use a group of the base (${[...DEBIAN_GROUPS].slice(0, 6).join(', ')}, ...)`);
      }
    });
    if (u.group !== undefined && u.group !== u.name && !knownGroup(u.group)) at(['users', i, 'group'], `primary group "${u.group}" is not declared`);
  });

  const units = m.units ?? {};
  const state = new Map<string, string>();
  for (const kind of ['enable', 'disable', 'mask'] as const) {
    (units[kind] ?? []).forEach((u, i) => {
      const prev = state.get(u);
      if (prev) at(['units', kind, i], `unit "${u}" is already listed under ${prev}`, 'a unit is either enabled, disabled or masked');
      else state.set(u, kind);
    });
  }

  const outputs = m.outputs ?? {};
  if (outputs.diskless && !hasKernel(m) && m.base.source !== 'image') {
    at(['outputs', 'diskless'], 'a diskless output needs a kernel, but packages has no linux-image-* package', 'add linux-image-amd64 to packages', 'key');
  }
  if (outputs.ostree?.bootable === true && !hasKernel(m) && m.base.source !== 'image') {
    at(['outputs', 'ostree', 'bootable'], 'a bootable ostree output needs a kernel, but packages has no linux-image-* package', 'add linux-image-amd64 to packages');
  }
  if (outputs.diskless?.encrypt === true) {
    // Everything else an image publishes is readable by anyone who can reach the public tree.
    for (const other of ['ostree', 'tarball', 'erofs', 'disk'] as const) {
      if (outputs[other] !== undefined) at(['outputs', other], `an image with outputs.diskless.encrypt publishes nothing in the clear, but "${other}" would publish its content unencrypted`, `remove outputs.${other}, or build the unencrypted variant as its own image`, 'key');
    }
    if (m.streams !== undefined) at(['streams'], 'an encrypted image has no published OSTree ref, so it cannot have release streams', 'remove streams', 'key');
  }
  if (m.packages?.length && m.base.source === 'tree') {
    at(['packages'], 'packages need a Debian base (base.source: debian)', 'a tree base has no package manager treecast can drive', 'key');
  }
  return out;
}
