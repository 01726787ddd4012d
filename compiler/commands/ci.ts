import { EXIT, UserError } from '../diagnostics.js';
import { gitDescribe } from '../git.js';
import { planChanges } from '../gitops/plan.js';
import { loadImages } from '../images.js';
import { interruptSignal } from '../interrupt.js';
import { localRepoPath } from '../compile/build.js';
import { openPublishedHistory } from '../compile/remote-history.js';
import { defaultRef } from '../images.js';
import { buildAndPublish, unpublished } from '../pipeline.js';
import { terminal } from '../progress.js';
import { openRepo } from '../repo.js';
import { printJson, type Command } from './command.js';
import { serveCommand } from './serve.js';
import { checkDestination, downloadTree, parseDestination, uploadTree } from '../publish/upload.js';

export const ciCommand: Command = {
  name: 'ci',
  summary: 'validate, plan, build the affected images and publish them (what CI runs on push)',
  usage: 'treecast ci [--since REV] [--all] [--allow-dirty] [--no-remote-history] [--to DEST] [--serve [--port N]] [--json]',
  help: [
    'Affected images: those whose inputs changed since REV (default HEAD~1), plus images never published.',
    'With publish.url in treecast.yaml, builds continue from the published tree (see treecast build --help);',
    'an image up to date with its published tip is not published again.',
    'Release streams (manifest `streams`) whose ref is not where the manifest says (a promotion or roll-back',
    'commit) are moved to the commit already published for that version: nothing is built for them.',
    'Exit 0 when everything affected was built and published, 1 on invalid input or a failed build, 2 on usage errors.',
    'Options:',
    '  --since REV     commit to compare with (in GitHub Actions: ${{ github.event.before }})',
    '  --all           build and publish every image',
    '  --allow-dirty   publish even when the working tree has uncommitted changes',
    '  --no-remote-history  do not read publish.url: build from the local cache and publish dir only',
    '  --serve         then serve the publish dir (127.0.0.1, --port, default 8080)',
    '  --to DEST       first bring DEST\'s tree down into the publish dir, then upload to it with rsync (a directory or [user@]host:path), see publish --help',
  ].join('\n'),
  options: { since: { type: 'string' }, all: { type: 'boolean' }, 'allow-dirty': { type: 'boolean' }, 'no-remote-history': { type: 'boolean' }, serve: { type: 'boolean' }, port: { type: 'string' }, host: { type: 'string' }, to: { type: 'string' } },
  async run(ctx) {
    const repo = openRepo({ repo: ctx.repo });
    // A bad DEST is refused before the build, not after it.
    const to = ctx.values.to !== undefined ? parseDestination(String(ctx.values.to)) : undefined;
    if (to) await checkDestination(repo.publishDir, to);
    const git = await gitDescribe(repo.root);
    if (git.endsWith('-dirty') && !ctx.values['allow-dirty']) {
      throw new UserError('the working tree has uncommitted changes: commit them, or pass --allow-dirty (published commits then record a -dirty git id)');
    }
    const { all } = loadImages(repo);
    // With --to, DEST's tree comes down first (see publish --help): the publish dir then knows what is published.
    if (to) await downloadTree(repo.publishDir, to, { progress: terminal() && !ctx.json, privateDir: repo.privateDir });
    const plan = await planChanges(repo, all, ctx.values.since as string | undefined);
    const names = new Set(ctx.values.all ? all.map((i) => i.manifest.name) : plan.affected.map((a) => a.name));
    const signal = interruptSignal();
    // Read once: it also tells which refs are published when this runner's publish dir is empty.
    const history = ctx.values['no-remote-history'] ? undefined : await openPublishedHistory(repo, localRepoPath(repo), all.map((i) => defaultRef(repo, i.manifest)), signal);
    for (const img of await unpublished(repo, all)) if (!history?.refs.has(defaultRef(repo, img.manifest))) names.add(img.manifest.name);
    const selected = all.filter((i) => names.has(i.manifest.name));
    process.stderr.write(`ci: ${selected.length} of ${all.length} image(s) to build and publish${selected.length ? `: ${selected.map((i) => i.manifest.name).join(', ')}` : ''}\n`);
    const result = await buildAndPublish(repo, all, selected, { signal, remoteHistory: history ?? false });
    // Also when nothing was rebuilt: the destination catches up with the local tree.
    if (to) await uploadTree(repo.publishDir, to, { progress: terminal() && !ctx.json, privateDir: repo.privateDir });
    if (ctx.json) printJson({ git, since: plan.since, affected: plan.affected, built: result.built, published: result.published, streams: result.streams });
    else {
      for (const b of result.built) {
        const p = result.published.find((x) => x.name === b.name);
        const status = p ? (p.delta ? `published (delta ${p.delta})` : 'published') : b.upToDate === 'published' ? 'up to date with the published tree' : 'not published (base of another image)';
        process.stdout.write(`${b.name}\t${b.version}\t${b.commit.slice(0, 12)}\t${b.cached ? 'cached' : `built in ${b.seconds.toFixed(1)}s`}\t${status}\n`);
      }
      for (const s of result.streams.filter((x) => x.moved)) {
        process.stdout.write(`${s.image}\t${s.version}\t${s.commit.slice(0, 12)}\tstream ${s.stream} (${s.ref})\t${s.delta ? `moved (delta ${s.delta})` : 'moved'}\n`);
      }
    }
    if (ctx.values.serve) return serveCommand.run({ ...ctx, values: { port: ctx.values.port, host: ctx.values.host } });
    return EXIT.ok;
  },
};
