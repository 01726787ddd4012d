/** The ostree CLI operations treecast needs, all through the exec wrapper. */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { run } from '../exec.js';

export async function ensureRepo(repoPath: string, mode: 'bare-user' | 'archive' | 'bare'): Promise<void> {
  if (existsSync(path.join(repoPath, 'config'))) return;
  await run('ostree', ['init', `--repo=${repoPath}`, `--mode=${mode}`]);
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
