import { EXIT } from '../diagnostics.js';
import { buildImages } from '../build/build.js';
import { loadImages } from '../images.js';
import { interruptSignal } from '../interrupt.js';
import { openRepo } from '../repo.js';
import { printJson, type Command } from './command.js';

export const buildCommand: Command = {
  name: 'build',
  summary: 'compile images into OSTree commits and artifacts in the local cache',
  usage: 'treecast build [image-name|manifest...] [--force] [--json]',
  help: [
    'Without arguments, builds every image of the repository; base images are built first.',
    'An image whose inputs (manifest, includes, overlays, files, scripts, base commit) are unchanged is not rebuilt.',
    'Options:',
    '  --force   rebuild even when the inputs are unchanged',
    '  --json    print {images:[{name, ref, commit, version, inputHash, cached, seconds, steps}]}',
  ].join('\n'),
  options: { force: { type: 'boolean' } },
  async run(ctx) {
    const repo = openRepo({ repo: ctx.repo });
    const { all, selected } = loadImages(repo, ctx.positionals);
    const results = await buildImages(repo, all, selected, { force: Boolean(ctx.values.force), signal: interruptSignal() });
    if (ctx.json) printJson({ images: results });
    else for (const r of results) process.stdout.write(`${r.name}\t${r.version}\t${r.commit}\t${r.cached ? 'cached' : `${r.seconds.toFixed(1)}s`}\n`);
    return EXIT.ok;
  },
};
