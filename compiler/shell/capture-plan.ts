/**
 * `treecast shell --capture`: what a session changed, as things a manifest
 * can say. Pure: it works on listings of the overlay's upper dir, the lower
 * checkout and the merged view; capture.ts does the I/O around it.
 *
 * What each manifest piece can carry decides where a change goes:
 * - an overlay directory (git) keeps content, symlinks and the executable
 *   bit only: new and modified files and links go there;
 * - `files:` entries set exact mode and owner: for every captured file whose
 *   mode is not 0644/0755 or whose owner is not root:root (source: the copy
 *   in the overlay, which `files` then overrides), and links not owned by root;
 * - `remove-files:` (applied before overlays) for deletions, and for an
 *   entry whose type changed (an overlay cannot put a file where a directory is);
 * - `postprocess:` lines for directories whose mode/owner git cannot keep,
 *   and for new empty directories (git keeps no empty directory).
 */
import { UserError } from '../diagnostics.js';

export type NodeType = 'file' | 'dir' | 'symlink' | 'whiteout' | 'special';

export interface FsNode {
  type: NodeType;
  /** Permission bits incl. setuid/setgid/sticky. */
  mode: number;
  uid: number;
  gid: number;
  /** Symlinks only. */
  target?: string;
}

export interface CaptureInput {
  /** Every entry of the upper dir as image paths ("/etc/x"), parents before children. */
  upper: [string, FsNode][];
  /** The entry at an image path in the image as it was (the lower layer). */
  lower(p: string): FsNode | undefined;
  /** Names of a directory of the lower layer. */
  lowerNames(dir: string): string[];
  /** For each directory of the upper dir: the names the mounted overlay showed there. */
  merged: Map<string, Set<string>>;
  /** Whether a regular file of the upper dir has the same bytes as the lower one. */
  sameContent(p: string): boolean;
}

export interface CopyEntry {
  path: string;
  type: 'file' | 'dir' | 'symlink';
  mode: number;
  target?: string;
}

export interface FilesEntry {
  path: string;
  source?: string;
  symlink?: string;
  mode?: string;
  owner?: number;
  group?: number;
}

export interface CapturePlan {
  /** What goes into the overlay directory, parents first. */
  copy: CopyEntry[];
  /** `files:` entries; `source` is relative to the overlay directory (capture.ts prefixes it). */
  files: FilesEntry[];
  /** `remove-files:` entries. */
  remove: string[];
  /** `postprocess:` lines for directories. */
  postprocess: string[];
  /** Changes left out as session noise (NOISE). */
  ignored: string[];
  /** One line per change, for the person: "+ /etc/x", "~ /etc/y (mode 0644 -> 0600)", "- /z". */
  summary: string[];
}

/**
 * Session noise, never captured: shell histories and editor state anywhere,
 * and the scratch directories (/tmp and /run are a tmpfs in the sandbox and
 * never reach the upper dir; /var/tmp does).
 */
const NOISE_NAMES = new Set(['.ash_history', '.bash_history', '.sh_history', '.zsh_history', '.python_history', '.lesshst', '.viminfo', '.wget-hsts']);
const NOISE_DIRS = ['/tmp', '/var/tmp', '/run'];

export function isNoise(p: string): boolean {
  if (NOISE_DIRS.some((d) => p === d || p.startsWith(d + '/'))) return true;
  return NOISE_NAMES.has(p.slice(p.lastIndexOf('/') + 1));
}

/** What git checks a file out as: 0755 when any x bit is set, else 0644 (root:root, like every overlay file). */
const gitKeeps = (n: FsNode) => n.uid === 0 && n.gid === 0 && (n.type === 'dir' ? n.mode === 0o755 : n.type === 'symlink' || n.mode === 0o644 || n.mode === 0o755);

const octal = (mode: number) => mode.toString(8).padStart(4, '0');
const GLOB_CHARS = /[*?]/;
const shq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
const parentOf = (p: string) => p.slice(0, p.lastIndexOf('/')) || '/';

export function planCapture(input: CaptureInput): CapturePlan {
  const plan: CapturePlan = { copy: [], files: [], remove: [], postprocess: [], ignored: [], summary: [] };
  const special = input.upper.filter(([p, n]) => n.type === 'special' && !isNoise(p)).map(([p]) => p);
  if (special.length) throw new UserError(`cannot capture special files (devices, fifos, sockets: an image holds only files, directories and links): ${special.join(', ')}; remove them in the session and capture again`);

  const removeEntry = (p: string) => {
    if (GLOB_CHARS.test(p)) throw new UserError(`cannot capture the deletion of "${p}": remove-files reads * and ? as globs; remove it with a postprocess line instead`);
    plan.remove.push(p);
  };
  // Deletions: what the lower layer has in a directory the overlay no longer shows.
  for (const [dir, names] of [...input.merged].sort(([a], [b]) => (a < b ? -1 : 1))) {
    if (isNoise(dir)) continue;
    const lowerDir = input.lower(dir);
    if (lowerDir?.type !== 'dir') continue;
    for (const name of input.lowerNames(dir)) {
      const p = dir === '/' ? `/${name}` : `${dir}/${name}`;
      if (names.has(name)) continue;
      if (isNoise(p)) plan.ignored.push(p);
      else {
        removeEntry(p);
        plan.summary.push(`- ${p}`);
      }
    }
  }

  const changed = new Set<string>();
  const copyDirs = new Map<string, FsNode>();
  for (const [p, n] of input.upper) {
    if (n.type === 'whiteout' || n.type === 'special') continue;
    if (isNoise(p)) {
      if (n.type !== 'dir') plan.ignored.push(p);
      continue;
    }
    const old = input.lower(p);
    if (old && old.type !== n.type && (old.type === 'dir' || n.type === 'dir')) removeEntry(p);
    if (n.type === 'dir') {
      copyDirs.set(p, n);
      if (!old || old.type !== 'dir') plan.summary.push(`+ ${p}/ (${octal(n.mode)})`), changed.add(p);
      else if (old.mode !== n.mode || old.uid !== n.uid || old.gid !== n.gid) plan.summary.push(`~ ${p}/ (${attrChange(old, n)})`), changed.add(p);
      continue;
    }
    const sameAttrs = old && old.type === n.type && old.mode === n.mode && old.uid === n.uid && old.gid === n.gid;
    if (n.type === 'symlink') {
      if (sameAttrs && old!.target === n.target) continue; // copied up by a chown of the same owner
    } else if (sameAttrs && input.sameContent(p)) continue; // copied up by `touch`: nothing an image keeps changed
    changed.add(p);
    plan.copy.push({ path: p, type: n.type, mode: n.mode, target: n.target });
    plan.summary.push(old?.type === n.type ? `~ ${p} (${n.type === 'file' && input.sameContent(p) ? attrChange(old, n) : 'content' + (sameAttrs ? '' : ', ' + attrChange(old, n))})` : `+ ${p}${n.type === 'symlink' ? ` -> ${n.target}` : ` (${octal(n.mode)})`}`);
    if (!gitKeeps(n)) {
      plan.files.push(n.type === 'symlink' ? { path: p, symlink: n.target!, owner: n.uid, group: n.gid } : { path: p, source: p.slice(1), mode: octal(n.mode), owner: n.uid, group: n.gid });
    }
  }

  // Directories of the overlay: the parents of what is copied, and changed directories themselves.
  const needed = new Set<string>();
  for (const c of plan.copy) for (let d = parentOf(c.path); d !== '/'; d = parentOf(d)) needed.add(d);
  for (const d of changed) if (copyDirs.has(d)) for (let x = d; x !== '/'; x = parentOf(x)) needed.add(x);
  const dirs: CopyEntry[] = [...needed].sort().map((d) => {
    const n = copyDirs.get(d) ?? input.lower(d);
    if (!n || n.type !== 'dir') throw new Error(`internal: ${d} is a parent in the upper dir but no directory`);
    const empty = !plan.copy.some((c) => c.path.startsWith(d + '/')) && ![...needed].some((x) => x.startsWith(d + '/'));
    const isNew = input.lower(d)?.type !== 'dir';
    if (!gitKeeps(n) || (isNew && empty)) {
      const own = n.uid !== 0 || n.gid !== 0 ? ` && chown ${n.uid}:${n.gid} ${shq(d)}` : '';
      plan.postprocess.push(`mkdir -p ${shq(d)} && chmod ${octal(n.mode)} ${shq(d)}${own}`);
    }
    return { path: d, type: 'dir', mode: n.mode };
  });
  plan.copy = [...dirs, ...plan.copy];
  return plan;
}

function attrChange(a: FsNode, b: FsNode): string {
  const parts: string[] = [];
  if (a.mode !== b.mode) parts.push(`mode ${octal(a.mode)} -> ${octal(b.mode)}`);
  if (a.uid !== b.uid || a.gid !== b.gid) parts.push(`owner ${a.uid}:${a.gid} -> ${b.uid}:${b.gid}`);
  return parts.join(', ') || 'unchanged';
}
