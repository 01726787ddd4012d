import { EXIT } from '../diagnostics.js';
import { planChanges, toMatrix } from '../gitops/plan.js';
import { ansiColors, formatManifestDiff, isEmptyDiff, plainColors } from '../gitops/manifest-diff.js';
import { loadImages } from '../images.js';
import { openRepo } from '../repo.js';
import { printJson, type Command } from './command.js';

export const planCommand: Command = {
  name: 'plan',
  summary: 'show which images a git change affects, why, and how their manifests change',
  usage: 'treecast plan [--since REV] [--json | --matrix]',
  help: [
    'Compares REV..HEAD plus uncommitted changes (default REV: HEAD~1) against every input of every image:',
    'manifest, includes, overlays, source files, scripts, base image, treecast.yaml.',
    'Options:',
    '  --since REV  the commit to compare with',
    'A commit that only changes streams (a promotion or roll-back) affects no image: it is listed under streams.',
    '  --json       {since, changed, affected:[{name, reasons, manifest}], changes:{name: diff},',
    '                streams:[{image, stream, action, ref, from, to, text}], nodes:[{name, image, reasons}]}',
    'Nodes (nodes.yaml) are affected when their image is, when their entry changed, or a file of their overlays.',
    '  --matrix     GitHub Actions strategy.matrix: {"include":[{"image":..., "manifest":...}]}',
  ].join('\n'),
  options: { since: { type: 'string' }, matrix: { type: 'boolean' } },
  async run(ctx) {
    const repo = openRepo({ repo: ctx.repo });
    const { all } = loadImages(repo);
    const plan = await planChanges(repo, all, ctx.values.since as string | undefined);
    if (ctx.values.matrix) {
      process.stdout.write(JSON.stringify(toMatrix(plan)) + '\n');
      return EXIT.ok;
    }
    if (ctx.json) {
      printJson(plan);
      return EXIT.ok;
    }
    const c = process.stdout.isTTY && !process.env.NO_COLOR ? ansiColors : plainColors;
    process.stdout.write(`${plan.changed.length} path(s) changed since ${plan.since ?? '(the beginning)'}; ${plan.affected.length} of ${all.length} image(s) affected\n`);
    for (const a of plan.affected) {
      process.stdout.write(`\n${a.name} (${a.manifest})\n`);
      for (const r of a.reasons) process.stdout.write(c.dim(`  because ${r}\n`));
      const d = plan.changes[a.name]!;
      const lines = formatManifestDiff(d, c);
      process.stdout.write(isEmptyDiff(d) ? c.dim('    manifest unchanged (inputs changed)\n') : lines.join('\n') + '\n');
    }
    if (plan.streams.length) {
      // Promotions build nothing: ci/publish point the stream refs at commits already published.
      process.stdout.write(`\nstreams (no build: publish moves the refs)\n`);
      for (const s of plan.streams) {
        const paint = s.action === 'rollback' || s.action === 'remove' ? c.del : s.action === 'promote' || s.action === 'add' ? c.add : c.chg;
        process.stdout.write(`  ${paint(s.text)}${c.dim(`  (${s.ref})`)}\n`);
      }
    }
    if (plan.nodes.length) {
      // Nodes need no build: publish writes their overlay archive and boot script again.
      process.stdout.write(`\nnodes (publish writes their overlay and boot script)\n`);
      for (const n of plan.nodes) {
        process.stdout.write(`  ${n.name} (image ${n.image})\n`);
        for (const r of n.reasons) process.stdout.write(c.dim(`    because ${r}\n`));
      }
    }
    return EXIT.ok;
  },
};
