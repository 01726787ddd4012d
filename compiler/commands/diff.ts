import path from 'node:path';
import { localRepoPath } from '../compile/build.js';
import { EXIT, UsageError, UserError } from '../diagnostics.js';
import { assertResolved, describeFileChange, diffCommits, resolveSpec, versionDirsFor } from '../gitops/commit-diff.js';
import { ansiColors, plainColors } from '../gitops/manifest-diff.js';
import { openRepo } from '../repo.js';
import { printJson, type Command } from './command.js';

export const diffCommand: Command = {
  name: 'diff',
  summary: 'compare two versions of an image: packages, files, metadata',
  usage: 'treecast diff <A> <B> [--json]',
  help: 'A and B are name@version, an OSTree ref, or a commit id, looked up in the build repository and then in the published one.',
  options: {},
  async run(ctx) {
    if (ctx.positionals.length !== 2) throw new UsageError('diff needs exactly two versions: treecast diff edge-host@2026.11.1 edge-host@2026.11.2');
    const repo = openRepo({ repo: ctx.repo });
    const repos = [localRepoPath(repo), path.join(repo.publishDir, 'repo')];
    const dirs = versionDirsFor(repo.cacheDir, repo.publishDir);
    const [aSpec, bSpec] = ctx.positionals as [string, string];
    const a = assertResolved(await resolveSpec(aSpec, repos, dirs), aSpec);
    const b = assertResolved(await resolveSpec(bSpec, repos, dirs), bSpec);
    let where = a.repo;
    if (a.repo !== b.repo) {
      // ostree diff needs both commits in one repository.
      const both = (await Promise.all(repos.map(async (r) => ((await resolveSpec(a.commit, [r], dirs)) && (await resolveSpec(b.commit, [r], dirs)) ? r : undefined)))).find(Boolean);
      if (!both) throw new UserError(`${aSpec} and ${bSpec} are not in the same repository; publish both or build both locally`);
      where = both;
    }
    const d = await diffCommits(where, { spec: aSpec, commit: a.commit }, { spec: bSpec, commit: b.commit });
    if (ctx.json) {
      printJson(d);
      return EXIT.ok;
    }
    const c = process.stdout.isTTY && !process.env.NO_COLOR ? ansiColors : plainColors;
    const w = (s: string) => process.stdout.write(s + '\n');
    w(`${aSpec} (${d.from.version ?? '?'}, ${d.from.commit.slice(0, 12)}) -> ${bSpec} (${d.to.version ?? '?'}, ${d.to.commit.slice(0, 12)})`);
    w(`packages: ${d.packages.added.length} added, ${d.packages.removed.length} removed, ${d.packages.upgraded.length} upgraded`);
    for (const p of d.packages.added) w(c.add(`  + ${p.name} ${p.version}`));
    for (const p of d.packages.removed) w(c.del(`  - ${p.name} ${p.version}`));
    for (const p of d.packages.upgraded) w(c.chg(`  ~ ${p.name} ${p.from} -> ${p.to}`));
    w(`files: ${d.files.length} changed`);
    for (const f of d.files) w((f.kind === 'added' ? c.add : f.kind === 'removed' ? c.del : c.chg)(`  ${describeFileChange(f)}`));
    if (d.metadata.length) w('metadata:');
    for (const m of d.metadata) w(c.chg(`  ~ ${m.key}: ${m.before ?? '(none)'} -> ${m.after ?? '(none)'}`));
    return EXIT.ok;
  },
};
