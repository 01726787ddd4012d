/**
 * Files and directories of an image that are not world-readable.
 *
 * Everything an image holds is handed to anyone who can reach the published
 * HTTP tree: the squashfs/tarball/erofs under images/ and the objects of the
 * archive repo under repo/. A mode of 0600 protects a file on a running host,
 * not in a download. MANIFEST.json carries this list so that a person (and
 * the index page) sees what an image would expose to anyone, rather than
 * finding out from a leaked /etc/shadow.
 *
 * Two sources, one answer, both in the deployed layout (/usr/etc at /etc):
 *  - privateFiles(tree): a walk of the checkout emit writes the artifacts
 *    from, so the list is exactly what the squashfs/tarball/erofs contain
 *    (whatever the checkout does to owners and modes, the list follows);
 *  - privateFilesOfCommit(): `ostree ls -R` of the commit, for images with no
 *    artifact and hence no checkout. Their commit is still public (repo/ is
 *    an archive repo served as plain files), and checking out ~20k files only
 *    to stat them would cost seconds where one ostree process costs a fraction.
 * test/hostile/published-privacy.test.ts checks both against an independent
 * listing of the commit.
 */
import { lstatSync, readdirSync, type Stats } from 'node:fs';
import path from 'node:path';
import { UserError } from '../diagnostics.js';
import { run } from '../exec.js';

export interface PrivateFile {
  /** Image-absolute path as a deployed host sees it ("/etc/shadow"). */
  path: string;
  /** Permission bits incl. setuid/setgid/sticky, 4-digit octal ("0640"). */
  mode: string;
  owner: number;
  group: number;
  type: 'file' | 'dir';
}

const WORLD_READABLE = 0o004;

const octal = (mode: number) => (mode & 0o7777).toString(8).padStart(4, '0');

/** Code-unit order: the same on every machine, unlike localeCompare. */
const byPath = (a: PrivateFile, b: PrivateFile) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);

/**
 * Walks `tree` with lstat only. Symlinks are never followed (a link in a
 * hostile image may point anywhere on the build host) and never listed (their
 * mode says nothing about what they give access to). Special files are not
 * listed either: finalize removes them and no artifact carries them.
 */
export function privateFiles(tree: string): PrivateFile[] {
  const rootStat = lstatSync(tree);
  if (!rootStat.isDirectory()) throw new UserError(`${tree} is not a directory (an image tree to list private files of)`);
  const out: PrivateFile[] = [];
  const consider = (imagePath: string, st: Stats) => {
    if ((st.mode & WORLD_READABLE) === 0) out.push({ path: imagePath, mode: octal(st.mode), owner: st.uid, group: st.gid, type: st.isDirectory() ? 'dir' : 'file' });
  };
  consider('/', rootStat);
  // An explicit stack: a hostile image may nest directories deeper than the JS call stack.
  const stack: [host: string, image: string][] = [[tree, '']];
  while (stack.length) {
    const [hostDir, imageDir] = stack.pop()!;
    // A directory we cannot read is not skipped: it is exactly what this list must not miss.
    for (const name of readdirSync(hostDir)) {
      const host = path.join(hostDir, name);
      const image = `${imageDir}/${name}`;
      const st = lstatSync(host);
      if (st.isDirectory()) {
        consider(image, st);
        stack.push([host, image]);
      } else if (st.isFile()) {
        consider(image, st);
      }
    }
  }
  return out.sort(byPath);
}

/** One line of `ostree ls -R`: `d00755 0 0      0 /usr` or `l00777 0 0      0 /bin -> usr/bin`. */
const LS_LINE = /^([-dl])([0-7]{5,6}) (\d+) (\d+) +(\d+) (\/.*)$/;

/**
 * The non-world-readable entries of an `ostree ls -R` listing, in the layout
 * emit checks out (/usr/etc renamed to /etc, replacing any /etc).
 *
 * ostree prints names raw, so a name with a newline splits its line. A line
 * that does not parse fails the listing rather than being skipped, so such a
 * name cannot drop an entry silently; a crafted name can still make its own
 * path look shorter here, which is one reason the artifacts' list comes from
 * the checkout walk.
 */
export function privateFilesFromOstreeLs(listing: string): PrivateFile[] {
  const entries: PrivateFile[] = [];
  let hasUsrEtc = false;
  for (const line of listing.split('\n')) {
    if (line === '') continue;
    const m = LS_LINE.exec(line);
    if (!m) throw new UserError(`cannot read this line of \`ostree ls -R\` (a file name with a newline?): ${JSON.stringify(line)}`);
    const [, t, modeStr, uid, gid, , rest] = m;
    if (t === 'l') continue;
    const p = rest!;
    if (p === '/usr/etc' && t === 'd') hasUsrEtc = true;
    const mode = parseInt(modeStr!, 8);
    if ((mode & WORLD_READABLE) === 0) entries.push({ path: p, mode: octal(mode), owner: Number(uid), group: Number(gid), type: t === 'd' ? 'dir' : 'file' });
  }
  const deployed = hasUsrEtc
    ? entries
        .filter((e) => e.path !== '/etc' && !e.path.startsWith('/etc/'))
        .map((e) => (e.path === '/usr/etc' || e.path.startsWith('/usr/etc/') ? { ...e, path: e.path.slice('/usr'.length) } : e))
    : entries;
  return deployed.sort(byPath);
}

/** privateFilesFromOstreeLs of a commit in a local repo. */
export async function privateFilesOfCommit(repo: string, commit: string, signal?: AbortSignal): Promise<PrivateFile[]> {
  const r = await run('ostree', ['ls', `--repo=${repo}`, '-R', commit, '/'], { signal });
  return privateFilesFromOstreeLs(r.stdout);
}
