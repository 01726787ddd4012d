/**
 * The confinement rule, made visible: build steps and outputs never touch the
 * file system themselves. Image paths go through compiler/compile/rootfs.ts
 * (resolved inside the root, links re-rooted), host files (caches, scratch,
 * artifact staging) through compiler/compile/host-files.ts. A new step that
 * imports node:fs and joins `ctx.root` by hand fails here, not in production.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../helpers/build-fixture.js';

const CONFINED_DIRS = ['compiler/steps', 'compiler/outputs'];
const FS_IMPORT = /(?:from\s+|import\s*\(\s*|require\s*\(\s*)['"](?:node:)?fs(?:\/promises)?['"]/;
const PROCESS_IMPORT = /['"](?:node:)?child_process['"]|from\s+['"]execa['"]/;

function sources(): string[] {
  return CONFINED_DIRS.flatMap((d) =>
    fs
      .readdirSync(path.join(PROJECT_ROOT, d))
      .filter((f) => f.endsWith('.ts'))
      .map((f) => path.join(d, f)),
  );
}

describe('lint: steps and outputs reach files only through rootfs.ts and host-files.ts', () => {
  it('finds the step and output modules', () => {
    const files = sources();
    expect(files).toContain('compiler/steps/finalize.ts');
    expect(files).toContain('compiler/outputs/diskless.ts');
    expect(files.length).toBeGreaterThan(15);
  });

  it.each(sources())('%s imports neither node:fs nor a process API', (file) => {
    const text = fs.readFileSync(path.join(PROJECT_ROOT, file), 'utf8');
    const offending = text.split('\n').filter((l) => FS_IMPORT.test(l) || PROCESS_IMPORT.test(l));
    expect(offending, `${file} must use compiler/compile/rootfs.ts (image paths), compiler/compile/host-files.ts (host files) and compiler/exec.ts (programs)`).toEqual([]);
  });

  it('the rule itself catches the forms an import can take', () => {
    for (const bad of [`import { rmSync } from 'node:fs';`, `import fs from "fs";`, `import { readFile } from 'node:fs/promises';`, `const fs = await import('node:fs');`]) expect(FS_IMPORT.test(bad), bad).toBe(true);
    expect(FS_IMPORT.test(`import { writeFileIn } from '../compile/rootfs.js';`)).toBe(false);
    expect(PROCESS_IMPORT.test(`import { spawn } from 'node:child_process';`)).toBe(true);
  });
});
