import { EXIT, UsageError } from '../diagnostics.js';
import { humanSize } from '../compile/emit.js';
import { runGc, type GcReport } from '../gc/run.js';
import { CATEGORIES } from '../gc/plan.js';
import { loadImages } from '../images.js';
import { openRepo } from '../repo.js';
import { printJson, type Command } from './command.js';

export const gcCommand: Command = {
  name: 'gc',
  summary: 'free space in the build cache: unused cache refs, old local commits, stale out/ versions, leftovers',
  usage: 'treecast gc [--keep N] [--dry-run] [--no-wait] [--json]',
  help: [
    'Removes from the cache dir (treecast.yaml cache-dir, TREECAST_CACHE_DIR) what no current image needs:',
    '  leftovers      work dirs of interrupted builds (tmp/*, out/<name>/.staging-*), of a killed repository',
    '                 conversion (repo.migrating, repo.old beside a complete repo/)',
    '  out            out/<name>/<version> beyond the N newest versions (never the newest, never the one the ref',
    '                 points at), and out/<name> of images no longer in the repository',
    '  repo           base cache refs (treecast/cache/...) no current manifest uses, refs of images no longer in',
    '                 the repository (named), commits beyond the N newest of each image ref (kept: the commits of',
    '                 kept out/ versions and of the published tip), commits on no ref; then ostree prune',
    '  apt-archives   the per-cache .deb downloads of older treecasts (builds now use the per-user apt cache,',
    '                 TREECAST_APT_CACHE, which gc leaves alone: it is outside the cache dir)',
    'Every manifest must be valid: gc decides what is current from them. It never touches the publish dir',
    'or anything outside the cache dir, and follows no symlink out of it.',
    'Options:',
    '  --keep N     versions kept per image (default: treecast.yaml retention.keep, else 5)',
    '  --dry-run    print what would be removed and the bytes it would free; write nothing (no lock taken)',
    '  --no-wait    fail at once when a build holds this cache dir (default: wait for it)',
    '  --json       print {dryRun, cacheDir, keep, items:[{category, kind, what, reason}],',
    '               categories:{<category>:{items, bytes}}, totalBytes, objects:{before, after}, cacheBytes:{before, after}}',
  ].join('\n'),
  options: { keep: { type: 'string' }, 'dry-run': { type: 'boolean' }, 'no-wait': { type: 'boolean' } },
  async run(ctx) {
    const repo = openRepo({ repo: ctx.repo });
    const keep = parseKeep(ctx.values.keep as string | undefined) ?? repo.config.retention?.keep ?? 5;
    const { all } = loadImages(repo);
    const r = await runGc(repo, all, { keep, dryRun: Boolean(ctx.values['dry-run']), wait: !ctx.values['no-wait'] });
    if (ctx.json) printJson(r);
    else process.stdout.write(formatReport(r));
    return EXIT.ok;
  },
};

function parseKeep(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new UsageError(`--keep "${v}": must be a whole number of versions, 1 or more (see: treecast gc --help)`);
  return Number(v);
}

export function formatReport(r: GcReport): string {
  const lines: string[] = [];
  const verb = r.dryRun ? 'would remove' : 'removed';
  if (!r.items.length) lines.push(`nothing to remove in ${r.cacheDir} (keeping ${r.keep} version(s) per image)`);
  else lines.push(`${verb} from ${r.cacheDir} (keeping ${r.keep} version(s) per image):`);
  for (const i of r.items) lines.push(`  ${i.category.padEnd(12)}  ${i.kind.padEnd(11)}  ${i.what}  (${i.reason})`);
  lines.push(r.dryRun ? 'would free:' : 'freed:');
  for (const c of CATEGORIES) lines.push(`  ${c.padEnd(12)}  ${String(r.categories[c].items).padStart(4)} item(s)  ${humanSize(r.categories[c].bytes).padStart(10)}`);
  lines.push(`  ${'total'.padEnd(12)}  ${String(r.items.length).padStart(4)} item(s)  ${humanSize(r.totalBytes).padStart(10)}  (${r.totalBytes} bytes)`);
  lines.push(`repo objects: ${r.objects.before} -> ${r.objects.after}; cache dir: ${humanSize(r.cacheBytes.before)} -> ${humanSize(r.cacheBytes.after)}${r.dryRun ? ' (predicted)' : ''}`);
  return lines.join('\n') + '\n';
}
