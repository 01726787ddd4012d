/**
 * History from the published tree. A CI build job starts with an empty cache
 * and no public/, so the only record of what was published is the HTTP tree at
 * treecast.yaml `publish.url`. Before building, treecast reads each image ref's
 * published tip with the real ostree client (commit objects only: a few
 * hundred bytes per commit) and continues from it: the next version, the
 * parent of the new commit, "inputs unchanged, nothing to build", and the
 * base commit a derived image starts from.
 *
 * `planHistory` is the pure decision; the rest is the I/O around it, every
 * process through compiler/exec.ts.
 *
 * Where the objects go, and why:
 *  - The metadata-only pulls land in a side repository, `<cache>/published-history`,
 *    never in the build repo. A metadata-only pull leaves a *partial* commit
 *    (`state/<c>.commitpartial`), and `ostree pull-local --depth` from a repo
 *    holding a partial parent fails ("Importing <x>.dirtree: linkat: No such
 *    file or directory", ostree 2022.7) — publishing the new commit into a
 *    fresh publish dir would break. `ostree commit --parent=X` does not need X
 *    at all, and pull-local treats an absent parent as the end of history, so
 *    the build repo keeps the invariant "only complete commits".
 *  - A base image's published commit that a derived image must be built on is
 *    pulled in full into the build repo (by checksum, no ref written): that is
 *    what the base-image step checks out.
 *
 * GPG: when treecast.yaml configures signing and its key is available here,
 * the remote verifies commits and the summary with that key (a pulled base
 * ends up inside the derived image, so a forged one must be refused). Without
 * a key (a CI build job holds no secrets) the remote is --no-gpg-verify:
 * objects are still checked against their checksums, the commit is trusted as
 * far as the transport (use https) — and hosts verify signatures themselves.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CommandError, run } from '../exec.js';
import { UserError } from '../diagnostics.js';
import { debug, info, warn } from '../log.js';
import { exportPublicKey } from '../publish/gpg.js';
import type { Repo } from '../repo.js';
import { commitMetadata, ensureRepo, refVersions, revParse } from './ostree.js';
import { nextVersion } from './plan.js';

export const PUBLISHED_REMOTE = 'treecast-published';

/** What one commit says about itself (metadata treecast writes). */
export interface CommitInfo {
  commit: string;
  version?: string;
  inputHash?: string;
}

export interface LocalTip extends CommitInfo {
  /** Commit ids along the local ref's history, the tip first, including the last parent named (even when absent). */
  history: string[];
}

export interface PublishedTip extends CommitInfo {
  /** Versions along the published ref, as far as fetched (tip first). */
  versions: string[];
  /**
   * An encrypted diskless image (outputs.diskless.encrypt): no ref, no commit in
   * the published repo; this tip comes from the public tree's MANIFEST.json.
   */
  encrypted?: boolean;
}

export interface HistoryInput {
  inputHash: string;
  force: boolean;
  prefix: string;
  local?: LocalTip;
  published?: PublishedTip;
  /** Versions along the local ref and along the ref in the local publish dir. */
  localVersions: string[];
  publicDirVersions: string[];
}

export type HistoryDecision =
  | { action: 'cached'; from: 'local' | 'published'; commit: string; version: string; note?: string }
  | { action: 'build'; version: string; parent?: string; parentFrom?: 'local' | 'published'; note?: string };

/**
 * Pure: given the local tip, the published tip and the input hash of this
 * build, decide between "up to date" and "build version V on parent P".
 *
 * The local tip counts when it is at or ahead of the published one (its
 * history contains the published tip) — or when nothing is published. A local
 * tip that is behind or off the published history is ignored: the published
 * tree is the source of truth, and building on a stale local commit would fork
 * the published ref.
 */
export function planHistory(i: HistoryInput): HistoryDecision {
  const version = nextVersion(i.prefix, [...i.localVersions, ...i.publicDirVersions, ...(i.published?.versions ?? []), ...(i.published?.version ? [i.published.version] : [])]);
  const { local, published } = i;
  if (local && (!published || local.history.includes(published.commit))) {
    if (!i.force && local.inputHash === i.inputHash) return { action: 'cached', from: 'local', commit: local.commit, version: local.version ?? '' };
    return { action: 'build', version, parent: local.commit, parentFrom: 'local' };
  }
  if (published) {
    const stale = local ? `the local ${local.version ?? local.commit.slice(0, 12)} (${local.commit.slice(0, 12)}) is not in the published history and is left aside` : undefined;
    if (!i.force && published.inputHash === i.inputHash) return { action: 'cached', from: 'published', commit: published.commit, version: published.version ?? '', note: stale };
    return { action: 'build', version, parent: published.commit, parentFrom: 'published', note: stale };
  }
  return { action: 'build', version };
}

/** Commits and parents named by `ostree log` output, tip first. */
export function parseLogHistory(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/^(?:commit|Parent:)\s+([0-9a-f]{64})\s*$/gm)) if (!out.includes(m[1]!)) out.push(m[1]!);
  return out;
}

/** The local tip of a ref with its history, or undefined when the ref does not exist. */
export async function localTip(repoPath: string, ref: string): Promise<LocalTip | undefined> {
  const commit = await revParse(repoPath, ref);
  if (!commit) return undefined;
  const log = await run('ostree', ['log', `--repo=${repoPath}`, commit], { allowFailure: true });
  return {
    commit,
    version: await commitMetadata(repoPath, commit, 'version'),
    inputHash: await commitMetadata(repoPath, commit, 'treecast.input-hash'),
    history: [commit, ...parseLogHistory(log.stdout).filter((c) => c !== commit)],
  };
}

/** Seconds a network operation may take before the published tree counts as unreachable. */
const NETWORK_TIMEOUT_MS = 120_000;

export interface PublishedHistory {
  url: string;
  /** The ostree repository URL (`${url}/repo`). */
  repoUrl: string;
  verified: boolean;
  /** Refs present in the published summary. */
  refs: Set<string>;
  tip(ref: string): PublishedTip | undefined;
  /** Make a published commit complete in the build repo (full pull by checksum); returns whether it had to be fetched. */
  ensureCommit(commit: string, signal?: AbortSignal): Promise<boolean>;
  /**
   * Fetch only /usr/etc of a published commit (its accounts: the ids a new build keeps and is
   * checked against) into the history repository, and return that repository to read it from.
   */
  fetchEtc(commit: string, signal?: AbortSignal): Promise<string>;
}

/** The history side repository: metadata-only pulls, never the build repo (see the header). */
export const historyRepoPath = (repo: Repo) => path.join(repo.cacheDir, 'published-history');

/** Whether treecast.yaml names a published URL (the default 127.0.0.1:8080 is never consulted). */
export const hasPublishedUrl = (repo: Repo) => repo.config.publish?.url !== undefined;

function unreachable(url: string, detail: string): UserError {
  return new UserError(
    `cannot read the published history at ${url}: ${detail}\n` +
      `  (treecast.yaml publish.url; build from scratch on purpose with --no-remote-history: versions restart and the published ref gets an unrelated commit)`,
  );
}

/** Ctrl-C during a network step is the user's doing, not an internal error (exit 1, like an interrupted build). */
const interrupted = (url: string) => new UserError(`reading the published history at ${url}: interrupted`);

/** The first meaningful line of an ostree failure, for the error message. */
function ostreeReason(err: unknown): string {
  if (err instanceof CommandError) {
    const line = err.stderr.split('\n').find((l) => l.trim()) ?? err.message.split('\n')[0]!;
    return line.replace(/^error:\s*/, '').trim();
  }
  return err instanceof Error ? err.message.split('\n')[0]! : String(err);
}

async function addRemote(repoPath: string, repoUrl: string, keyFile: string | undefined): Promise<void> {
  // --force replaces an existing remote of that name: a changed publish.url or key takes effect.
  const gpg = keyFile ? [`--gpg-import=${keyFile}`, '--set=gpg-verify=true', '--set=gpg-verify-summary=true'] : ['--no-gpg-verify'];
  await run('ostree', ['remote', 'add', `--repo=${repoPath}`, '--force', ...gpg, PUBLISHED_REMOTE, repoUrl]);
}

/** The public key to verify published commits with, when signing is configured and the key is here. */
async function verificationKey(repo: Repo, dir: string): Promise<string | undefined> {
  const keyId = repo.config.signing?.['gpg-key'];
  if (!keyId) return undefined;
  const homedir = path.resolve(repo.root, repo.config.signing?.['gpg-homedir'] ?? path.join(process.env.HOME ?? '/root', '.gnupg'));
  try {
    const armored = await exportPublicKey({ keyId, homedir });
    const file = path.join(dir, 'verify-key.asc');
    writeFileSync(file, armored);
    return file;
  } catch {
    warn(`signing key ${keyId} is not available in ${homedir}: the published history is read without GPG verification`);
    return undefined;
  }
}

/**
 * Read the published tips of `refs` from treecast.yaml's publish.url; undefined
 * when no URL is configured (then the network is never touched).
 */
export async function openPublishedHistory(repo: Repo, localRepo: string, refs: string[], signal?: AbortSignal): Promise<PublishedHistory | undefined> {
  if (!hasPublishedUrl(repo)) {
    debug('publish.url is not configured: no published history to continue from');
    return undefined;
  }
  const url = repo.publicUrl.replace(/\/+$/, '');
  const repoUrl = `${url}/repo`;
  const hrepo = historyRepoPath(repo);
  mkdirSync(repo.cacheDir, { recursive: true });
  await ensureRepo(hrepo, 'archive');
  const keyFile = await verificationKey(repo, hrepo);
  await addRemote(hrepo, repoUrl, keyFile);

  let listed: string[];
  const t0 = performance.now();
  try {
    const r = await run('ostree', ['remote', 'refs', `--repo=${hrepo}`, PUBLISHED_REMOTE], { timeoutMs: NETWORK_TIMEOUT_MS, signal });
    listed = r.stdout
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean)
      .map((l) => (l.startsWith(`${PUBLISHED_REMOTE}:`) ? l.slice(PUBLISHED_REMOTE.length + 1) : l));
  } catch (err) {
    if (signal?.aborted) throw interrupted(repoUrl);
    const reason = ostreeReason(err);
    // Publish always writes a summary; none means nothing was ever published there (ostree words it
    // "server has no summary file", or with gpg-verify-summary "GPG verification enabled, but no summary found").
    if (/no summary (file|found)/i.test(reason)) {
      info(`published history: nothing published at ${repoUrl} yet (no summary); starting from scratch`);
      listed = [];
    } else throw unreachable(repoUrl, reason);
  }
  const refSet = new Set(listed);
  const wanted = [...new Set(refs)].filter((r) => refSet.has(r));
  const tips = new Map<string, PublishedTip>();
  if (wanted.length) {
    // Parents the publish tree still keeps (retention); older ones are pruned there, and a pull with --depth stops at them.
    const depth = Math.max((repo.config.retention?.keep ?? 5) - 1, 0);
    try {
      await run('ostree', ['pull', `--repo=${hrepo}`, '--commit-metadata-only', `--depth=${depth}`, PUBLISHED_REMOTE, ...wanted], { timeoutMs: NETWORK_TIMEOUT_MS, signal });
    } catch (err) {
      if (signal?.aborted) throw interrupted(repoUrl);
      throw unreachable(repoUrl, ostreeReason(err));
    }
    for (const ref of wanted) {
      const rref = `${PUBLISHED_REMOTE}:${ref}`;
      const commit = await revParse(hrepo, rref);
      if (!commit) continue;
      tips.set(ref, {
        commit,
        version: await commitMetadata(hrepo, commit, 'version'),
        inputHash: await commitMetadata(hrepo, commit, 'treecast.input-hash'),
        versions: await refVersions(hrepo, rref),
      });
    }
  }
  // Encrypted images publish no ref: their tips come from the public tree's index.json and MANIFEST.json.
  const missing = [...new Set(refs)].filter((r) => !tips.has(r));
  const encrypted = missing.length ? await encryptedTips(url, missing, signal) : new Map<string, PublishedTip>();
  for (const [ref, tip] of encrypted) tips.set(ref, tip);
  writeEncryptedTips(repo, encrypted);
  info(`published history: ${tips.size} of ${new Set(refs).size} ref(s) published at ${repoUrl}${encrypted.size ? ` (${encrypted.size} of them encrypted images, from index.json)` : ''}${keyFile ? ' (GPG-verified)' : ''}, read in ${((performance.now() - t0) / 1000).toFixed(2)}s`);

  let localRemote = false;
  return {
    url,
    repoUrl,
    verified: Boolean(keyFile),
    refs: refSet,
    tip: (ref) => tips.get(ref),
    async ensureCommit(commit, sig) {
      if (commitComplete(localRepo, commit)) return false;
      if (!localRemote) {
        await addRemote(localRepo, repoUrl, keyFile);
        localRemote = true;
      }
      try {
        await run('ostree', ['pull', `--repo=${localRepo}`, PUBLISHED_REMOTE, commit], { timeoutMs: 30 * 60_000, signal: sig });
      } catch (err) {
        if (sig?.aborted) throw interrupted(repoUrl);
        throw unreachable(repoUrl, `pulling commit ${commit}: ${ostreeReason(err)}`);
      }
      return true;
    },
    async fetchEtc(commit, sig) {
      try {
        await run('ostree', ['pull', `--repo=${hrepo}`, '--subpath=/usr/etc', PUBLISHED_REMOTE, commit], { timeoutMs: NETWORK_TIMEOUT_MS, signal: sig });
      } catch (err) {
        if (sig?.aborted) throw interrupted(repoUrl);
        throw unreachable(repoUrl, `pulling /usr/etc of commit ${commit}: ${ostreeReason(err)}`);
      }
      return hrepo;
    },
  };
}

/**
 * Tips of encrypted diskless images: the image of index.json whose `ref` is
 * wanted, then its latest MANIFEST.json (`encrypted: true`: version, commit id,
 * input hash). Unsigned plain HTTP, like index.json itself: it decides version
 * numbers and "inputs unchanged", never content (an encrypted commit is never
 * pulled). A tree without index.json (nothing published yet) has none.
 */
async function encryptedTips(url: string, refs: string[], signal?: AbortSignal): Promise<Map<string, PublishedTip>> {
  const out = new Map<string, PublishedTip>();
  const get = async (u: string): Promise<unknown> => {
    const res = await fetch(u, { signal: signal ? AbortSignal.any([signal, AbortSignal.timeout(NETWORK_TIMEOUT_MS)]) : AbortSignal.timeout(NETWORK_TIMEOUT_MS) });
    if (res.status === 404) return undefined;
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    return res.json();
  };
  let index: { images?: { name?: string; ref?: string; versions?: { version?: string }[] }[] } | undefined;
  try {
    index = (await get(`${url}/index.json`)) as typeof index;
  } catch (err) {
    if (signal?.aborted) throw interrupted(url);
    throw unreachable(`${url}/index.json`, err instanceof Error ? err.message : String(err));
  }
  for (const img of index?.images ?? []) {
    if (!img.name || !img.ref || !refs.includes(img.ref)) continue;
    let m: { encrypted?: boolean; commit?: string; version?: string; inputHash?: string } | undefined;
    try {
      m = (await get(`${url}/images/${encodeURIComponent(img.name)}/latest/MANIFEST.json`)) as typeof m;
    } catch (err) {
      if (signal?.aborted) throw interrupted(url);
      throw unreachable(`${url}/images/${img.name}/latest/MANIFEST.json`, err instanceof Error ? err.message : String(err));
    }
    if (!m?.encrypted || typeof m.commit !== 'string' || !/^[0-9a-f]{64}$/.test(m.commit)) continue;
    out.set(img.ref, { commit: m.commit, version: m.version, inputHash: m.inputHash, versions: (img.versions ?? []).map((v) => v.version).filter((v): v is string => typeof v === 'string'), encrypted: true });
  }
  return out;
}

/** Where a build records encrypted tips, for a later `treecast publish` of an image the build found up to date. */
export const encryptedTipsPath = (repo: Repo) => path.join(repo.cacheDir, 'published-history-encrypted.json');

function writeEncryptedTips(repo: Repo, tips: Map<string, PublishedTip>): void {
  writeFileSync(encryptedTipsPath(repo), JSON.stringify(Object.fromEntries(tips), null, 2) + '\n');
}

export function readEncryptedTip(repo: Repo, ref: string): PublishedTip | undefined {
  try {
    return (JSON.parse(readFileSync(encryptedTipsPath(repo), 'utf8')) as Record<string, PublishedTip>)[ref];
  } catch {
    return undefined;
  }
}

/**
 * A commit whose objects are all in the repo: its commit object exists and no
 * `.commitpartial` marker says a pull of it was cut short (ostree's own record).
 */
export function commitComplete(repoPath: string, commit: string): boolean {
  return existsSync(path.join(repoPath, 'objects', commit.slice(0, 2), `${commit.slice(2)}.commit`)) && !existsSync(path.join(repoPath, 'state', `${commit}.commitpartial`));
}
