import { copyFileSync, chmodSync, existsSync, rmSync } from 'node:fs';
import path from 'node:path';
import { run, type RunResult } from '../exec.js';
import { UserError } from '../diagnostics.js';
import { resolveInRoot } from '../build/rootfs.js';
import { resolveInside } from '../paths.js';
import { sandboxArgs } from './packages.js';
import type { Step } from './step.js';

/**
 * postprocess: shell snippets, then postprocess-script, inside the image root
 * under bubblewrap without network — after every file is in place, so
 * scripts see (and may rely on) the injected files (rpm-ostree#997/#874).
 */
export const postprocess: Step = {
  name: 'postprocess',
  tools: ['bwrap'],
  applies: (m) => (m.postprocess?.length ?? 0) > 0 || Boolean(m['postprocess-script']),
  async run(ctx) {
    if (!existsSync(resolveInRoot(ctx.root, '/bin/sh', true))) {
      throw new UserError('postprocess needs /bin/sh in the image, and this image has none');
    }
    const env = { SOURCE_DATE_EPOCH: String(ctx.epoch) };
    const args = [...sandboxArgs(ctx.root, { network: false }), '--setenv', 'SOURCE_DATE_EPOCH', String(ctx.epoch), '--setenv', 'TREECAST_IMAGE', ctx.manifest.name];
    const scripts = ctx.manifest.postprocess ?? [];
    for (const [i, snippet] of scripts.entries()) {
      await runScript(`postprocess[${i}]`, () => run('bwrap', [...args, '/bin/sh', '-ec', snippet], { signal: ctx.signal, env, allowFailure: true }));
    }
    const file = ctx.manifest['postprocess-script'];
    if (file) {
      const src = resolveInside(ctx.repo.root, file);
      if (!src || !existsSync(src)) throw new UserError(`postprocess-script "${file}" no longer exists in the repository`);
      const inImage = '/tmp/.treecast-postprocess';
      // /tmp is a fresh tmpfs inside the sandbox: bind the script in from the host instead.
      const staged = path.join(ctx.workDir, 'postprocess-script');
      copyFileSync(src, staged);
      chmodSync(staged, 0o755);
      await runScript(`postprocess-script ${file}`, () => run('bwrap', [...args, '--ro-bind', staged, inImage, inImage], { signal: ctx.signal, env, allowFailure: true }));
      rmSync(staged, { force: true });
    }
    return `${scripts.length + (file ? 1 : 0)} scripts`;
  },
};

/** A failing script is named with the tail of what it printed: stdout too, where `echo "missing x"; exit 1` reports. */
async function runScript(label: string, fn: () => Promise<RunResult>): Promise<void> {
  const r = await fn();
  if (r.exitCode === 0) return;
  const tail = (text: string) => (text.trimEnd() ? text.trimEnd().split('\n').slice(-15) : []);
  const lines = [...tail(r.stdout), ...tail(r.stderr)];
  throw new UserError(`${label} failed with exit code ${r.exitCode}${lines.length ? `:\n    ${lines.join('\n    ')}` : ''}`);
}
