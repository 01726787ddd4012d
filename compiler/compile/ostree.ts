/** The ostree CLI operations treecast needs, all through the exec wrapper. */
import { existsSync, readFileSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { info } from '../log.js';
import { run } from '../exec.js';

export async function ensureRepo(repoPath: string, mode: 'bare-user' | 'archive' | 'bare'): Promise<void> {
  if (existsSync(path.join(repoPath, 'config'))) return;
  await run('ostree', ['init', `--repo=${repoPath}`, `--mode=${mode}`]);
}

/** The mode a repository was made with (`[core] mode=` of its config), or undefined when there is none. */
export function repoMode(repoPath: string): string | undefined {
  const config = path.join(repoPath, 'config');
  if (!existsSync(config)) return undefined;
  return /^mode=(\S+)/m.exec(readFileSync(config, 'utf8'))?.[1];
}

/**
 * Make `repoPath` a repository of `mode`, carrying over every ref with its
 * whole history when it exists with another mode (a cache made by an older
 * treecast). The new repository is filled beside the old one and swapped in
 * by two renames; a migration killed half way leaves `<repo>.migrating`,
 * which the next run throws away and starts again.
 */
export async function ensureRepoMode(repoPath: string, mode: 'bare' | 'bare-user'): Promise<void> {
  const next = `${repoPath}.migrating`;
  const old = `${repoPath}.old`;
  rmSync(next, { recursive: true, force: true });
  // Killed between the two renames: the old repository is still complete.
  if (!existsSync(repoPath) && existsSync(path.join(old, 'config'))) renameSync(old, repoPath);
  rmSync(old, { recursive: true, force: true });
  const current = repoMode(repoPath);
  if (current === undefined) return ensureRepo(repoPath, mode);
  if (current === mode) return;
  const t0 = performance.now();
  await run('ostree', ['init', `--repo=${next}`, `--mode=${mode}`]);
  const refs = (await run('ostree', ['refs', `--repo=${repoPath}`])).stdout.split('\n').filter((r) => r && !r.includes(':'));
  if (refs.length) await run('ostree', ['pull-local', `--repo=${next}`, '--depth=-1', repoPath, ...refs]);
  renameSync(repoPath, old);
  renameSync(next, repoPath);
  rmSync(old, { recursive: true, force: true });
  info(`converted the build repository ${repoPath} from ${current} to ${mode} (${refs.length} refs, ${((performance.now() - t0) / 1000).toFixed(1)}s, once)`);
}

/** Commit checksum of a ref, or undefined when the ref does not exist. */
export async function revParse(repoPath: string, ref: string): Promise<string | undefined> {
  if (!existsSync(path.join(repoPath, 'config'))) return undefined;
  const r = await run('ostree', ['rev-parse', `--repo=${repoPath}`, ref], { allowFailure: true });
  return r.exitCode === 0 ? r.stdout.trim() : undefined;
}

/** One metadata value of a commit, printed as GVariant text; strings are unquoted. */
export async function commitMetadata(repoPath: string, rev: string, key: string): Promise<string | undefined> {
  const r = await run('ostree', ['show', `--repo=${repoPath}`, rev, `--print-metadata-key=${key}`], { allowFailure: true });
  if (r.exitCode !== 0) return undefined;
  const text = r.stdout.trim();
  const m = /^'(.*)'$/s.exec(text);
  return m ? m[1]!.replace(/\\'/g, "'") : text;
}

/** Versions along a ref's history, newest first (from `ostree log`). */
export async function refVersions(repoPath: string, ref: string): Promise<string[]> {
  if (!(await revParse(repoPath, ref))) return [];
  const r = await run('ostree', ['log', `--repo=${repoPath}`, ref], { allowFailure: true });
  return [...r.stdout.matchAll(/^\s*Version:\s*(\S+)/gm)].map((m) => m[1]!);
}

/** Parse `[('a', '1'), ...]` GVariant text of a(ss)/a(sss) into tuples. */
export function parseTupleArray(text: string | undefined): string[][] {
  if (!text) return [];
  // An empty array prints with its type annotation: `@a(sss) []`.
  text = text.replace(/^@\S+\s*/, '');
  return [...text.matchAll(/\(([^()]*)\)/g)].map((m) => [...m[1]!.matchAll(/'((?:[^'\\]|\\.)*)'/g)].map((x) => x[1]!));
}

/** GVariant text for an array of string tuples. */
export function tupleArrayVariant(rows: string[][], arity: number): string {
  if (rows.length === 0) return `@a(${'s'.repeat(arity)}) []`;
  return '[' + rows.map((r) => '(' + r.map((s) => `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`).join(', ') + ')').join(', ') + ']';
}
