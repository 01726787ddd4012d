import { existsSync } from 'node:fs';
import path from 'node:path';
import { EXIT, UsageError } from '../diagnostics.js';
import { defaultRef, loadImages } from '../images.js';
import { builtItems, notBuiltError, type UpToDateItem } from '../publish/items.js';
import { publishFleet, publishOptions, publishWithStreams, type PublishItem } from '../publish/publish.js';
import { loadNodes } from '../nodes/index.js';
import { pendingStreamImages, refCommit } from '../publish/streams.js';
import { checkDestination, downloadTree, parseDestination, uploadTree } from '../publish/upload.js';
import { terminal } from '../progress.js';
import { openRepo } from '../repo.js';
import { printJson, type Command } from './command.js';

export const publishCommand: Command = {
  name: 'publish',
  summary: 'put built images into the publish dir: OSTree repo, artifacts, kickstart, iPXE, index',
  usage: 'treecast publish [image...] [--from CACHE...] [--dir public] [--url URL] [--gpg-key ID --gpg-homedir DIR] [--to DEST] [--json]',
  help: [
    'Publishes the last build of each image (default: all images). Crash-safe: objects, then artifacts,',
    'then refs and the summary; a killed publish leaves the previous state intact.',
    'Options:',
    '  --dir DIR          publish directory (default: treecast.yaml publish.dir, else public/)',
    '  --url URL          public URL of that directory, used in kickstart, iPXE and index pages',
    '  --gpg-key ID       sign commits, summary and SHA256SUMS with this key',
    '  --gpg-homedir DIR  GnuPG home holding the key',
    '  --from CACHE       take build results from this cache dir (repeatable; CI matrix jobs each build into their own)',
    '  --to DEST          publish to DEST, a directory or [user@]host:path (SSH), with rsync: first bring DEST\'s',
    '                     tree down into the publish dir (so an empty CI runner continues DEST\'s history: the',
    '                     previous commit, static deltas, retention, index), publish there, then upload in the',
    '                     order that keeps clients consistent (docs/serving.md). A DEST that does not exist yet',
    '                     (or holds no repo/config) is an empty history.',
    'An image without a local build whose published tip a build recorded (up to date with the published tree) is',
    'skipped, not an error.',
    'Release streams (manifest `streams`) of the images asked for whose ref is not where the manifest says (a',
    'promotion or roll-back commit) move to the commit already published for that version, as with treecast ci:',
    'nothing is rebuilt, so an image with streams needs no build when it is published (at DEST with --to).',
  ].join('\n'),
  options: { from: { type: 'string', multiple: true }, dir: { type: 'string' }, url: { type: 'string' }, 'gpg-key': { type: 'string' }, 'gpg-homedir': { type: 'string' }, to: { type: 'string' } },
  async run(ctx) {
    const repo = openRepo({ repo: ctx.repo });
    const { all, selected } = loadImages(repo, ctx.positionals);
    const v = ctx.values;
    if (v['gpg-homedir'] && !v['gpg-key']) throw new UsageError('--gpg-homedir needs --gpg-key');
    // Checked before any work: a bad DEST is a usage error, not a failure after a long publish.
    const to = v.to !== undefined ? parseDestination(String(v.to)) : undefined;
    const overrides: Parameters<typeof publishOptions>[1] = {};
    if (v.dir) overrides.dir = path.resolve(String(v.dir));
    if (v.url) overrides.url = String(v.url).replace(/\/+$/, '');
    if (v['gpg-key']) overrides.key = { keyId: String(v['gpg-key']), homedir: path.resolve(String(v['gpg-homedir'] ?? path.join(process.env.HOME ?? '/root', '.gnupg'))) };
    // Test hook for test/publish-crash.test.ts, not a user option: SIGKILL ourselves after a phase.
    if (process.env.TREECAST_TEST_CRASH_AFTER) overrides.crashAfter = process.env.TREECAST_TEST_CRASH_AFTER;
    // Every publish re-renders the fleet's files (nodes.yaml) for the latest version of each node's image.
    overrides.fleet = { repo, images: all, nodes: loadNodes(repo, all) };
    const opts = publishOptions(repo, overrides);
    if (to) await checkDestination(opts.dir, to);
    const from = (v.from as string[] | undefined)?.map((d) => path.resolve(d));
    const upToDate: UpToDateItem[] = [];
    const items: PublishItem[] = [];
    // Images with release streams and no build at all: on a promotion commit the workflow builds
    // nothing, and the publish job only moves their streams. Whether that is possible (the image
    // is published) is known once DEST's tree is down; otherwise the build error stands then.
    const unbuilt: (typeof selected)[number][] = [];
    // Before the download: an image that was never built (and has no streams) fails here, without a transfer.
    const takeUnbuilt = (img: (typeof selected)[number]) => Boolean(opts.streams?.[img.manifest.name]) && unbuilt.push(img) > 0;
    items.push(...(await builtItems(repo, selected, from?.length ? from : undefined, { onUpToDate: (u) => upToDate.push(u), onNotBuilt: takeUnbuilt })));
    // rsync's progress goes to our stdout (the exec wrapper inherits it there): only for a person at a terminal, never into --json.
    const progress = terminal() && !ctx.json;
    // DEST's history first, so the local publish continues it (previous commit, deltas, retention, index).
    const downloaded = to ? await downloadTree(opts.dir, to, { progress, privateDir: opts.privateDir }) : undefined;
    for (const img of unbuilt) if (!refCommit(path.join(opts.dir, 'repo'), defaultRef(repo, img.manifest))) throw notBuiltError(img.manifest.name);
    // Streams of the images asked for that have nothing new (up to date, or only promoted),
    // chosen the way ci chooses them; those of the published items ride along with them.
    const streamOnly = pendingStreamImages(repo, selected, opts, new Set(items.map((i) => i.manifest.name)));
    const result = items.length || streamOnly.length ? await publishWithStreams(items, opts, streamOnly) : { images: [], streams: [] };
    if (!items.length && !streamOnly.length) await publishFleet(opts);
    const published = result.images;
    const streams = result.streams.filter((x) => x.moved);
    // Also with nothing new: DEST catches up with the local tree. Nothing at all published anywhere: nothing to upload.
    const uploaded = to && existsSync(path.join(opts.dir, 'repo', 'config')) ? await uploadTree(opts.dir, to, { progress, privateDir: opts.privateDir }) : undefined;
    if (ctx.json) printJson({ dir: opts.dir, url: opts.url, signed: Boolean(opts.key), images: published, upToDate, streams, ...(downloaded ? { download: downloaded } : {}), ...(uploaded ? { upload: uploaded } : {}) });
    else {
      for (const p of published) process.stdout.write(`${p.name}\t${p.version}\t${p.commit}\t${p.delta ? `delta ${p.delta}` : 'no delta'}\n`);
      for (const u of upToDate) process.stdout.write(`${u.name}\t${u.version}\t${u.commit}\tup to date with the published tree\n`);
      for (const x of streams) process.stdout.write(`${x.image}\t${x.version}\t${x.commit}\tstream ${x.stream} (${x.ref})\t${x.delta ? `moved (delta ${x.delta})` : 'moved'}\n`);
    }
    return EXIT.ok;
  },
};
