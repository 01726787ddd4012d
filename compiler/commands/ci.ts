import { EXIT, UserError } from '../diagnostics.js';
import { gitDescribe } from '../git.js';
import { planChanges } from '../gitops/plan.js';
import { loadImages } from '../images.js';
import { interruptSignal } from '../interrupt.js';
import { buildAndPublish, unpublished } from '../pipeline.js';
import { openRepo } from '../repo.js';
import { printJson, type Command } from './command.js';
import { serveCommand } from './serve.js';
import { checkDestination, parseDestination, uploadTree } from '../publish/upload.js';

export const ciCommand: Command = {
  name: 'ci',
  summary: 'validate, plan, build the affected images and publish them (what CI runs on push)',
  usage: 'treecast ci [--since REV] [--all] [--allow-dirty] [--to DEST] [--serve [--port N]] [--json]',
  help: [
    'Affected images: those whose inputs changed since REV (default HEAD~1), plus images never published.',
    'Exit 0 when everything affected was built and published, 1 on invalid input or a failed build, 2 on usage errors.',
    'Options:',
    '  --since REV     commit to compare with (in GitHub Actions: ${{ github.event.before }})',
    '  --all           build and publish every image',
    '  --allow-dirty   publish even when the working tree has uncommitted changes',
    '  --serve         then serve the publish dir (127.0.0.1, --port, default 8080)',
    '  --to DEST       then upload the publish dir with rsync to DEST (a directory or [user@]host:path), see publish --help',
  ].join('\n'),
  options: { since: { type: 'string' }, all: { type: 'boolean' }, 'allow-dirty': { type: 'boolean' }, serve: { type: 'boolean' }, port: { type: 'string' }, host: { type: 'string' }, to: { type: 'string' } },
  async run(ctx) {
    const repo = openRepo({ repo: ctx.repo });
    // A bad DEST is refused before the build, not after it.
    const to = ctx.values.to !== undefined ? parseDestination(String(ctx.values.to)) : undefined;
    if (to) checkDestination(repo.publishDir, to);
    const git = await gitDescribe(repo.root);
    if (git.endsWith('-dirty') && !ctx.values['allow-dirty']) {
      throw new UserError('the working tree has uncommitted changes: commit them, or pass --allow-dirty (published commits then record a -dirty git id)');
    }
    const { all } = loadImages(repo);
    const plan = await planChanges(repo, all, ctx.values.since as string | undefined);
    const names = new Set(ctx.values.all ? all.map((i) => i.manifest.name) : plan.affected.map((a) => a.name));
    for (const img of await unpublished(repo, all)) names.add(img.manifest.name);
    const selected = all.filter((i) => names.has(i.manifest.name));
    process.stderr.write(`ci: ${selected.length} of ${all.length} image(s) to build and publish${selected.length ? `: ${selected.map((i) => i.manifest.name).join(', ')}` : ''}\n`);
    const result = await buildAndPublish(repo, all, selected, interruptSignal());
    // Also when nothing was rebuilt: the destination catches up with the local tree.
    if (to) await uploadTree(repo.publishDir, to, { progress: Boolean(process.stderr.isTTY && process.stdout.isTTY && !ctx.json) });
    if (ctx.json) printJson({ git, since: plan.since, affected: plan.affected, built: result.built, published: result.published });
    else {
      for (const b of result.built) {
        const p = result.published.find((x) => x.name === b.name);
        process.stdout.write(`${b.name}\t${b.version}\t${b.commit.slice(0, 12)}\t${b.cached ? 'cached' : `built in ${b.seconds.toFixed(1)}s`}\t${p ? (p.delta ? `published (delta ${p.delta})` : 'published') : 'not published (base of another image)'}\n`);
      }
    }
    if (ctx.values.serve) return serveCommand.run({ ...ctx, values: { port: ctx.values.port, host: ctx.values.host } });
    return EXIT.ok;
  },
};
