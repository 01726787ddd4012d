/**
 * The I/O around capture-plan.ts: list the session's upper dir and the
 * image it lay over, write the overlay directory, and the manifest fragment
 * beside it as <DIR>.capture.yaml. The upper dir is untrusted (whatever the
 * session made): it is only lstat'ed and read through rootfs.ts, never
 * followed, and the overlay is written through rootfs.ts with DIR as its root.
 */
import path from 'node:path';
import yaml from 'js-yaml';
import type { Stats } from 'node:fs';
import { ensureDir, hostPathExists, writeHostFile } from '../compile/host-files.js';
import { chmodIn, lstatIn, mkdirInRoot, readdirIn, readFileIn, readlinkIn, symlinkIn, walkTree, writeFileIn } from '../compile/rootfs.js';
import { UserError } from '../diagnostics.js';
import { VAR_LINKS } from '../steps/finalize.js';
import { planCapture, type CapturePlan, type FsNode } from './capture-plan.js';

export function nodeOf(st: Stats, target?: string): FsNode {
  const type = st.isDirectory() ? 'dir' : st.isFile() ? 'file' : st.isSymbolicLink() ? 'symlink' : st.isCharacterDevice() && st.rdev === 0 ? 'whiteout' : 'special';
  return { type, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, target };
}

const imagePath = (rel: string) => (rel ? `/${rel}` : '/');

/**
 * The booted layout keeps /home, /root, /srv, /opt, /mnt and /usr/local in
 * /var (finalize's VAR_LINKS), and so does the session's upper dir. A
 * manifest names them where the build has them: /var/srv/x is captured as
 * /srv/x, which an overlay reaches whether /srv is a directory at build time
 * (a Debian base) or the link to var/srv (an image-derived base).
 */
const VAR_HOMES = VAR_LINKS.map(([p, , varName]) => [`/${p}`, `/var/${varName}`] as const);

export function toManifestPath(p: string): string {
  for (const [m, v] of VAR_HOMES) if (p === v || p.startsWith(v + '/')) return m + p.slice(v.length);
  return p;
}

export function toBootedPath(p: string): string {
  for (const [m, v] of VAR_HOMES) if (p === m || p.startsWith(m + '/')) return v + p.slice(m.length);
  return p;
}

/** Where the manifest fragment of a capture into `dir` goes. */
export const fragmentPath = (dir: string) => `${dir.replace(/\/+$/, '')}.capture.yaml`;

/**
 * The capture plan of a session: `upper` and `lower` are host dirs (the
 * overlay's upper dir and the checkout under it), `merged` what
 * mergedListings() saw while the overlay was mounted (relative dir -> names).
 */
export function captureSession(upper: string, lower: string, merged: Map<string, Set<string>>): CapturePlan {
  const lowerNode = (p: string): FsNode | undefined => {
    const b = toBootedPath(p);
    const st = lstatIn(lower, b);
    return st && nodeOf(st, st.isSymbolicLink() ? readlinkIn(lower, b) : undefined);
  };
  const upperList: [string, FsNode][] = [];
  const seen = new Map<string, string>();
  for (const [rel, st] of walkTree(upper)) {
    const p = toManifestPath(imagePath(rel));
    // /srv replaced in the session and /var/srv/x written: one manifest path, two meanings.
    if (seen.has(p)) throw new UserError(`cannot capture both ${seen.get(p)} and ${imagePath(rel)}: both are ${p} in a manifest (restore one of them in the session)`);
    seen.set(p, imagePath(rel));
    upperList.push([p, nodeOf(st, st.isSymbolicLink() ? readlinkIn(upper, imagePath(rel)) : undefined)]);
  }
  return planCapture({
    // Parents first once more: /var/srv/x became /srv/x.
    upper: upperList.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
    lower: lowerNode,
    lowerNames: (dir) => (lstatIn(lower, toBootedPath(dir))?.isDirectory() ? readdirIn(lower, toBootedPath(dir)) : []),
    merged: new Map([...merged].map(([rel, names]) => [toManifestPath(imagePath(rel)), names])),
    sameContent: (p) => {
      const b = toBootedPath(p);
      const x = lstatIn(upper, b);
      const y = lstatIn(lower, b);
      if (!x?.isFile() || !y?.isFile() || x.size !== y.size) return false;
      return readFileIn(upper, b).equals(readFileIn(lower, b));
    },
  });
}

export interface CaptureResult {
  plan: CapturePlan;
  /** The fragment as YAML (also written to fragmentPath(dir)). */
  fragment: string;
  fragmentFile: string;
}

/**
 * Refuse a DIR that cannot take a capture: it must be inside the
 * repository (the fragment names its files relative to the repository root)
 * and new or empty. Checked before the session starts.
 */
export function checkCaptureDir(repoRoot: string, dir: string): void {
  const rel = path.relative(repoRoot, dir);
  if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) throw new UserError(`--capture ${dir}: must be a directory inside the repository (${repoRoot}), so the manifest fragment can name its files`);
  if (hostPathExists(dir) && readdirIn(dir, '/').length > 0) throw new UserError(`--capture ${dir}: exists and is not empty (capture into a new directory)`);
  if (hostPathExists(fragmentPath(dir))) throw new UserError(`--capture ${dir}: ${fragmentPath(dir)} exists already`);
}

/** Write the overlay directory and the fragment. */
export function writeCapture(repoRoot: string, dir: string, upper: string, plan: CapturePlan): CaptureResult {
  const rel = path.relative(repoRoot, dir);
  ensureDir(dir);
  for (const c of plan.copy) {
    if (c.type === 'dir') {
      mkdirInRoot(dir, c.path, c.mode);
      chmodIn(dir, c.path, c.mode);
    } else if (c.type === 'symlink') symlinkIn(dir, c.path, c.target!);
    else writeFileIn(dir, c.path, readFileIn(upper, toBootedPath(c.path)), { mode: c.mode });
  }
  const doc: Record<string, unknown> = {};
  if (plan.copy.length) doc.overlays = [rel];
  if (plan.files.length) doc.files = plan.files.map((f) => (f.source !== undefined ? { ...f, source: `${rel}/${f.source}` } : f));
  if (plan.remove.length) doc['remove-files'] = plan.remove;
  if (plan.postprocess.length) doc.postprocess = plan.postprocess;
  const header = [
    `# treecast shell --capture: what the session changed, beside the overlay ${rel}/.`,
    '# Merge these keys into the image manifest (append to lists it has already), commit both, rebuild.',
    ...plan.summary.map((s) => `#   ${s}`),
    ...(plan.ignored.length ? [`# left out as session noise: ${plan.ignored.join(', ')}`] : []),
  ].join('\n');
  const fragment = `${header}\n${Object.keys(doc).length ? yaml.dump(doc, { lineWidth: -1, noRefs: true }) : '# (no changes)\n'}`;
  const fragmentFile = fragmentPath(dir);
  writeHostFile(fragmentFile, fragment);
  return { plan, fragment, fragmentFile };
}
