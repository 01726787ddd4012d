/**
 * index.json and index.html: the catalog of the published tree, built from
 * the MANIFEST.json files that are actually published (the tree is the truth).
 * Pure functions over data; publish.ts does the reading and writing.
 */
import type { ImageManifestJson } from '../compile/emit.js';
import type { PrivateFile } from '../compile/private-files.js';

export interface PackageChanges {
  added: { name: string; version: string }[];
  removed: { name: string; version: string }[];
  upgraded: { name: string; from: string; to: string }[];
}

export interface CatalogVersion {
  version: string;
  commit: string;
  /** Build time (SOURCE_DATE_EPOCH). */
  date: string;
  /** When this version was published; null for versions published before treecast recorded it. */
  published: string | null;
  gitCommit: string;
  size: number;
  artifacts: { type: string; file: string; size: number; sha256: string; url: string }[];
  packageCount: number;
  changes: PackageChanges | null;
  /**
   * Files and directories that are not world-readable in the image, which
   * the artifacts and the repo hand to anyone anyway. null: the version was
   * built before MANIFEST.json recorded them (unknown, not "none").
   */
  privateFileCount: number | null;
  privateFiles: PrivateFile[] | null;
  /** outputs.diskless.encrypt: the root is published as ciphertext only; no commit, packages or file list. */
  encrypted?: boolean;
}

/** A release stream as published: where its ref points now (read from the repo, not from the manifest). */
export interface CatalogStream {
  name: string;
  ref: string;
  /** The published version of `commit`; null when no published version dir names it any more. */
  version: string | null;
  commit: string;
  /** Follows every build (else pinned by the manifest). */
  follows: boolean;
  kickstart: string;
  ipxe?: string;
}

export interface CatalogImage {
  name: string;
  ref: string;
  latest: string;
  /** None for an encrypted image: its commit is not published, so there is nothing to install from. */
  kickstart?: string;
  ipxe?: string;
  kernelArgs: string[];
  streams: CatalogStream[];
  versions: CatalogVersion[];
}

export interface Catalog {
  generator: string;
  url: string;
  repoUrl: string;
  remote: string;
  signed: boolean;
  publicKey?: string;
  updated: string;
  images: CatalogImage[];
}

export function packageChanges(prev: ImageManifestJson['packages'], next: ImageManifestJson['packages']): PackageChanges {
  const before = new Map(prev.map((p) => [p.name, p.version]));
  const after = new Map(next.map((p) => [p.name, p.version]));
  const changes: PackageChanges = { added: [], removed: [], upgraded: [] };
  for (const [name, version] of after) {
    const old = before.get(name);
    if (old === undefined) changes.added.push({ name, version });
    else if (old !== version) changes.upgraded.push({ name, from: old, to: version });
  }
  for (const [name, version] of before) if (!after.has(name)) changes.removed.push({ name, version });
  return changes;
}

/**
 * What publish records next to a version's artifacts (images/<name>/<version>/PUBLISHED.json)
 * when it first publishes it: the order retention, `latest` and the catalog go by.
 */
export interface PublishRecord {
  /** 1 + the highest sequence among the image's version dirs at the time: grows with every publish. */
  sequence: number;
  publishedAt: string;
  /** The commit published; a record naming another commit than MANIFEST.json does not count. */
  commit: string;
}

export type PublishedManifest = ImageManifestJson & { published?: PublishRecord };

const recorded = (m: PublishedManifest): PublishRecord | undefined => (m.published && m.published.commit === m.commit && Number.isInteger(m.published.sequence) ? m.published : undefined);

/**
 * Versions oldest first, in the order they were published, never by build
 * time: a rebuild of an older git commit carries an older SOURCE_DATE_EPOCH
 * but is the newest thing published. Versions published before treecast
 * recorded the order (no PUBLISHED.json) come before every recorded one:
 * those on the ref's history (`history`: commit ids, the tip first) in that
 * order, the others (older than the history retention kept) by build time,
 * then by version number.
 */
export function sortVersions<T extends PublishedManifest>(ms: readonly T[], history: readonly string[] = []): T[] {
  const rank = (m: T): [number, number, string] => {
    const r = recorded(m);
    if (r) return [2, r.sequence, ''];
    const at = history.indexOf(m.commit);
    return at >= 0 ? [1, -at, ''] : [0, 0, m.buildTime];
  };
  const keyed = ms.map((m) => ({ m, k: rank(m) }));
  keyed.sort((a, b) => a.k[0] - b.k[0] || a.k[1] - b.k[1] || a.k[2].localeCompare(b.k[2]) || a.m.version.localeCompare(b.m.version, undefined, { numeric: true }));
  return keyed.map((x) => x.m);
}

/**
 * Pure: which versions of one image stay published. `ordered` is oldest
 * first (sortVersions). Kept: the newest `keep` whose commit is in the public
 * repo, and every version a stream points at. Everything else goes, artifacts
 * and commit, and so does a version whose commit is no longer in the repo (its
 * artifacts would describe a commit no host can pull). The one decision that
 * artifacts, commits (prune) and index.json all follow.
 */
export function planRetention<T extends PublishedManifest>(ordered: readonly T[], o: { keep: number; pinned: ReadonlySet<string | null>; hasCommit: (commit: string) => boolean }): { kept: T[]; removed: T[] } {
  const present = ordered.filter((m) => o.hasCommit(m.commit));
  const newest = new Set(present.slice(-Math.max(o.keep, 1)).map((m) => m.version));
  const kept = present.filter((m) => newest.has(m.version) || o.pinned.has(m.version));
  const keptSet = new Set(kept);
  return { kept, removed: ordered.filter((m) => !keptSet.has(m)) };
}

/**
 * Packages of a MANIFEST.json that have a name. Manifests of package-less
 * images written before the build parsed an empty `@a(sss) []` correctly hold
 * one nameless entry; it must not count as a package nor break the page.
 */
function namedPackages(m: ImageManifestJson): ImageManifestJson['packages'] {
  return (m.packages ?? []).filter((p) => typeof p?.name === 'string' && p.name !== '');
}

export function buildCatalog(opts: { url: string; remote: string; signed: boolean; publicKey?: string; updated: string; images: { name: string; hasIpxe: boolean; versions: PublishedManifest[]; history?: readonly string[]; streams?: (Omit<CatalogStream, 'kickstart' | 'ipxe'> & { hasIpxe: boolean })[] }[] }): Catalog {
  const images: CatalogImage[] = opts.images
    .filter((i) => i.versions.length)
    .map((img) => {
      // Publish order: the last one is what the image's ref and `latest` point at.
      const sorted = sortVersions(img.versions, img.history);
      const versions = sorted
        .map((m, i) => ({
          version: m.version,
          commit: m.commit,
          date: m.buildTime,
          published: recorded(m)?.publishedAt ?? null,
          gitCommit: m.gitCommit,
          size: m.artifacts.reduce((s, a) => s + a.size, 0),
          artifacts: m.artifacts.map((a) => ({ ...a, url: `${opts.url}/images/${img.name}/${m.version}/${a.file}` })),
          packageCount: namedPackages(m).length,
          changes: i > 0 ? packageChanges(namedPackages(sorted[i - 1]!), namedPackages(m)) : null,
          privateFileCount: Array.isArray(m.privateFiles) ? m.privateFiles.length : null,
          privateFiles: Array.isArray(m.privateFiles) ? m.privateFiles : null,
          ...(m.encrypted ? { encrypted: true } : {}),
        }))
        .reverse();
      const latest = sorted[sorted.length - 1]!;
      return {
        name: img.name,
        ref: latest.ref,
        latest: latest.version,
        kickstart: latest.encrypted ? undefined : `${opts.url}/kickstart/${img.name}.ks`,
        ipxe: img.hasIpxe ? `${opts.url}/boot/${img.name}.ipxe` : undefined,
        kernelArgs: latest.kernelArgs,
        streams: (img.streams ?? []).map(({ hasIpxe, ...s }) => ({
          ...s,
          kickstart: `${opts.url}/kickstart/${img.name}-${s.name}.ks`,
          ipxe: hasIpxe ? `${opts.url}/boot/${img.name}-${s.name}.ipxe` : undefined,
        })),
        versions,
      };
    })
    .sort((a, b) => a.name.localeCompare(b.name));
  return { generator: 'treecast', url: opts.url, repoUrl: `${opts.url}/repo`, remote: opts.remote, signed: opts.signed, publicKey: opts.publicKey, updated: opts.updated, images };
}

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

export function humanBytes(n: number): string {
  const u = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) (n /= 1024), i++;
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}

function changesHtml(c: PackageChanges | null): string {
  if (!c) return '<span class="muted">first published version</span>';
  const parts: string[] = [];
  if (c.added.length) parts.push(`<span class="add">+${c.added.length} added</span> ${c.added.slice(0, 8).map((p) => esc(p.name)).join(', ')}`);
  if (c.removed.length) parts.push(`<span class="del">−${c.removed.length} removed</span> ${c.removed.slice(0, 8).map((p) => esc(p.name)).join(', ')}`);
  if (c.upgraded.length) parts.push(`<span class="upg">${c.upgraded.length} upgraded</span> ${c.upgraded.slice(0, 8).map((p) => `${esc(p.name)} ${esc(p.from)} → ${esc(p.to)}`).join(', ')}`);
  return parts.length ? parts.join('<br>') : '<span class="muted">no package changes</span>';
}

function privateFilesHtml(v: CatalogVersion): string {
  if (v.encrypted) return '<span class="private muted" data-encrypted="true">encrypted root: its files are not listed, and not readable here</span>';
  if (v.privateFiles === null) return '<span class="private muted">files not world-readable: not recorded (built before treecast listed them)</span>';
  const n = v.privateFiles.length;
  const label = `${n} ${n === 1 ? 'file' : 'files'} not world-readable`;
  if (!n) return `<span class="private muted" data-count="0">${label}</span>`;
  const items = v.privateFiles.map((f) => `<li><code>${esc(f.mode)} ${esc(String(f.owner))}:${esc(String(f.group))} ${esc(f.path)}${f.type === 'dir' ? '/' : ''}</code></li>`).join('');
  // Anyone who downloads an artifact or pulls the commit gets these too: the page says so next to the downloads.
  return `<details class="private" data-count="${n}"><summary>${label}</summary><p class="muted">in this version's OSTree commit and artifacts: anyone who can reach this tree can download them</p><ul>${items}</ul></details>`;
}

/** The streams of an image: which version each ref serves, and how a host follows it. */
function streamsHtml(c: Catalog, img: CatalogImage): string {
  if (!img.streams.length) return '';
  const rows = img.streams
    .map(
      (s) => `<tr data-stream="${esc(s.name)}">
  <td class="stream">${esc(s.name)}</td>
  <td><code>${esc(s.ref)}</code></td>
  <td class="stream-version">${s.version === null ? '<span class="muted">unlisted</span>' : esc(s.version)} ${s.follows ? '<span class="muted">follows every build</span>' : '<span class="muted">pinned</span>'}</td>
  <td><code title="${esc(s.commit)}">${esc(s.commit.slice(0, 12))}</code></td>
  <td><a href="${esc(s.kickstart)}">kickstart</a>${s.ipxe ? ` · <a href="${esc(s.ipxe)}">iPXE script</a>` : ''} · <code>ostree admin switch ${esc(c.remote)}:${esc(s.ref)}</code></td>
</tr>`,
    )
    .join('\n');
  return `<h3>Streams</h3>
<table class="streams">
<thead><tr><th>Stream</th><th>Ref</th><th>Version</th><th>Commit</th><th>Follow it</th></tr></thead>
<tbody>
${rows}
</tbody>
</table>`;
}

export function renderIndexHtml(c: Catalog): string {
  const remoteAdd = (img: CatalogImage) =>
    `ostree remote add ${c.signed ? '' : '--no-gpg-verify '}${c.remote} ${c.repoUrl} ${img.ref}` + (c.signed && c.publicKey ? `\ncurl -fsSL ${c.publicKey} | ostree remote gpg-import --stdin ${c.remote}` : '');
  const sections = c.images.map((img) => {
    const rows = img.versions
      .map(
        (v) => `<tr data-version="${esc(v.version)}">
  <td class="version">${esc(v.version)}${v.version === img.latest ? ' <span class="badge">latest</span>' : ''}${img.streams
          .filter((s) => s.version === v.version)
          .map((s) => ` <span class="badge stream">${esc(s.name)}</span>`)
          .join('')}</td>
  <td>${esc(v.date.replace('T', ' ').replace(/\.\d+Z$/, 'Z'))}${v.published ? `<br><span class="muted published">published ${esc(v.published.replace('T', ' ').replace(/\.\d+Z$/, 'Z'))}</span>` : ''}</td>
  <td><code title="${esc(v.commit)}">${esc(v.commit.slice(0, 12))}</code></td>
  <td class="size">${humanBytes(v.size)}</td>
  <td>${v.artifacts.map((a) => `<a href="${esc(a.url)}">${esc(a.file)}</a> <span class="muted">${humanBytes(a.size)}</span>`).join('<br>') || '<span class="muted">OSTree commit only</span>'}<br>${privateFilesHtml(v)}</td>
  <td>${changesHtml(v.changes)}</td>
</tr>`,
      )
      .join('\n');
    return `<section class="image" id="${esc(img.name)}" data-image="${esc(img.name)}">
<h2>${esc(img.name)} <span class="muted">${esc(img.ref)}</span></h2>
<p>Latest: <strong class="latest">${esc(img.latest)}</strong> · ${img.versions.length} version(s)${img.kickstart ? ` · <a href="${esc(img.kickstart)}">kickstart</a>` : ' · <span class="private">encrypted root: nodes fetch its key with their token (no commit, kickstart or file list here)</span>'}${img.ipxe ? ` · <a href="${esc(img.ipxe)}">iPXE script</a>` : ''}</p>
<h3>Use it</h3>
<pre class="copy"><code>${esc(remoteAdd(img))}
ostree admin deploy --os=${esc(img.name)} ${esc(c.remote)}:${esc(img.ref)}   # or: rpm-ostree rebase ${esc(c.remote)}:${esc(img.ref)}
ostree admin upgrade --os=${esc(img.name)}</code></pre>
${img.ipxe ? `<pre class="copy"><code>chain ${esc(img.ipxe)}</code></pre>` : ''}
${streamsHtml(c, img)}
<table>
<thead><tr><th>Version</th><th>Built</th><th>Commit</th><th>Size</th><th>Artifacts</th><th>Package changes</th></tr></thead>
<tbody>
${rows}
</tbody>
</table>
</section>`;
  });
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>treecast images</title>
<style>
body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; padding: 0 1rem; color: #1d232a; }
h1 { margin-bottom: 0; } h2 { margin-top: 2.5rem; border-bottom: 1px solid #d8dee4; padding-bottom: .3rem; }
.muted { color: #667; font-weight: normal; font-size: .9em; }
table { border-collapse: collapse; width: 100%; } th, td { text-align: left; vertical-align: top; padding: .35rem .6rem; border-bottom: 1px solid #eef1f4; }
pre.copy { background: #f4f6f8; padding: .7rem 1rem; overflow-x: auto; border-radius: 6px; }
.badge { background: #1f6feb; color: #fff; border-radius: 9px; padding: 0 .5rem; font-size: .75em; } .badge.stream { background: #8250df; }
.add { color: #1a7f37; } .del { color: #cf222e; } .upg { color: #9a6700; }
details.private summary { cursor: pointer; color: #9a6700; } details.private ul { margin: .3rem 0; padding-left: 1.2rem; } details.private p { margin: .3rem 0 0; }
</style>
</head>
<body>
<h1>treecast images</h1>
<p class="muted">OSTree repository <code>${esc(c.repoUrl)}</code> · ${c.signed ? 'commits and summary are GPG-signed' + (c.publicKey ? ` (<a href="${esc(c.publicKey)}">public key</a>)` : '') : 'unsigned: clients need <code>--no-gpg-verify</code>'} · updated ${esc(c.updated)} · <a href="index.json">index.json</a></p>
${sections.join('\n') || '<p>No images published yet.</p>'}
</body>
</html>
`;
}
