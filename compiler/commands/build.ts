import { EXIT } from '../diagnostics.js';
import { buildImages } from '../compile/build.js';
import { loadImages } from '../images.js';
import { interruptSignal } from '../interrupt.js';
import { openRepo } from '../repo.js';
import { printJson, type Command } from './command.js';

export const buildCommand: Command = {
  name: 'build',
  summary: 'compile images into OSTree commits and artifacts in the local cache',
  usage: 'treecast build [image-name|manifest...] [--force] [--no-remote-history] [--no-wait] [--json]',
  help: [
    'Without arguments, builds every image of the repository; base images are built first.',
    'An image whose inputs (manifest, includes, overlays, files, scripts, base commit) are unchanged is not rebuilt.',
    'With publish.url in treecast.yaml, the published tree is the history: each ref\'s published tip (read over HTTP,',
    'commit metadata only) gives the next version and the parent; an image whose inputs match the published tip is',
    'up to date (nothing to build, emit or publish); a derived image starts from its base\'s published commit.',
    'Options:',
    '  --force               rebuild even when the inputs are unchanged',
    '  --no-remote-history   do not read publish.url: build from the local cache only (versions restart on a fresh cache)',
    '  --no-wait             fail at once when another build holds this cache dir (default: wait, naming the holder)',
    '  --json                print {images:[{name, ref, commit, version, inputHash, cached, upToDate, parent, published, base, seconds, steps}]}',
  ].join('\n'),
  options: { force: { type: 'boolean' }, 'no-remote-history': { type: 'boolean' }, 'no-wait': { type: 'boolean' } },
  async run(ctx) {
    const repo = openRepo({ repo: ctx.repo });
    const { all, selected } = loadImages(repo, ctx.positionals);
    const results = await buildImages(repo, all, selected, { force: Boolean(ctx.values.force), signal: interruptSignal(), remoteHistory: !ctx.values['no-remote-history'], wait: !ctx.values['no-wait'] });
    if (ctx.json) printJson({ images: results });
    else
      for (const r of results) {
        const how = r.upToDate === 'published' ? `cached (up to date with the published ${r.version})` : r.cached ? 'cached' : `${r.seconds.toFixed(1)}s`;
        process.stdout.write(`${r.name}\t${r.version}\t${r.commit}\t${how}\n`);
      }
    return EXIT.ok;
  },
};
