/**
 * Runs the real `treecast` entry point (compiler/bin/treecast.mjs) in a child
 * process, the way users and CI run it, and helpers for temp copies of
 * fixture repositories.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The treecast checkout these tests belong to. */
export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = path.join(PROJECT_ROOT, 'compiler/bin/treecast.mjs');
export const FIXTURES = path.join(PROJECT_ROOT, 'test/fixtures');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runCli(args: string[], opts: { cwd?: string; env?: Record<string, string | undefined> } = {}): CliResult {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd: opts.cwd ?? PROJECT_ROOT,
    env: { ...process.env, TREECAST_DEBUG: undefined, ...opts.env },
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (r.error) throw r.error;
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Lines of a stream without the trailing empty one. */
export function lines(s: string): string[] {
  return s.split('\n').filter((l, i, all) => l !== '' || i < all.length - 1);
}

/** Signs of a stack trace or an internal error in CLI output: users must never see them for bad input. */
export const STACK_TRACE = /^\s+at .+[(:]\d+|internal error|\b(?:Type|Reference|Range|Syntax)Error\b|YAMLException/m;

export function makeTempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `treecast-${prefix}-`));
}

/** Copies a fixture repository (test/fixtures/<name>) to a new temp dir and returns its path. */
export function copyFixtureRepo(name: string): string {
  const dir = makeTempDir(name);
  fs.cpSync(path.join(FIXTURES, name), dir, { recursive: true });
  return dir;
}

export function removeDir(dir: string | undefined): void {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
}
