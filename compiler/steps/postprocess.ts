import path from 'node:path';
import { run } from '../exec.js';
import { UserError } from '../diagnostics.js';
import { existsIn } from '../compile/rootfs.js';
import { copyHostFile, hostPathExists, removeHostFile } from '../compile/host-files.js';
import { locate } from '../manifest/schema.js';
import { repoInputPath } from '../paths.js';
import { hostProcEntries, sandboxArgs, type Bind } from './sandbox.js';
import { withLayer } from './layer.js';
import type { BuildContext, Step } from './step.js';

/** postprocess-timeout when the manifest does not set it (schemas/image.schema.json says the same). */
export const DEFAULT_POSTPROCESS_TIMEOUT = 600;

/**
 * postprocess: shell snippets, then postprocess-script, inside the image root
 * in the sandbox of sandbox.ts without network — after every file is in
 * place, so scripts see (and may rely on) the injected files
 * (rpm-ostree#997/#874). Each one gets postprocess-timeout seconds.
 */
export const postprocess: Step = {
  name: 'postprocess',
  tools: ['bwrap'],
  applies: (m) => (m.postprocess?.length ?? 0) > 0 || Boolean(m['postprocess-script']),
  async run(ctx) {
    if (!existsIn(ctx.root, '/bin/sh')) {
      throw new UserError('postprocess needs /bin/sh in the image, and this image has none');
    }
    const procPresent = hostProcEntries();
    const scripts = ctx.manifest.postprocess ?? [];
    const file = ctx.manifest['postprocess-script'];
    // On an overlay of the root: `echo >> /etc/x` or `sed -i` must never reach a file hardlinked into the cache (layer.ts).
    await withLayer(ctx, 'postprocess', async (root) => {
      const sandboxed = (command: string[], roBinds: Bind[] = []) =>
        sandboxArgs(root, { network: false, epoch: ctx.epoch, image: ctx.manifest.name, roBinds, procPresent }, command);
      for (const [i, snippet] of scripts.entries()) {
        await runScript(ctx, `postprocess[${i}]`, ['postprocess', i], sandboxed(['/bin/sh', '-ec', snippet]));
      }
      if (file) {
        const src = repoInputPath(ctx.repo, file, 'file');
        if (!src || !hostPathExists(src)) throw new UserError(`postprocess-script "${file}" no longer exists in the repository`);
        const inImage = '/tmp/.treecast-postprocess';
        // /tmp is a fresh tmpfs inside the sandbox: bind the script in from the host instead.
        const staged = path.join(ctx.workDir, 'postprocess-script');
        copyHostFile(src, staged, 0o755);
        await runScript(ctx, `postprocess-script ${file}`, ['postprocess-script'], sandboxed([inImage], [{ src: staged, dest: inImage }]));
        removeHostFile(staged);
      }
    });
    return `${scripts.length + (file ? 1 : 0)} scripts`;
  },
};

/**
 * Run one script in bwrap. Only a small env reaches bwrap itself (it clears
 * the rest again inside). A failing script is named with the tail of what it
 * printed: stdout too, where `echo "missing x"; exit 1` reports. One that
 * outlives postprocess-timeout is killed the way Ctrl-C kills it (SIGTERM to
 * bwrap; --die-with-parent then takes the sandbox's pid namespace down).
 */
async function runScript(ctx: BuildContext, label: string, at: (string | number)[], args: string[]): Promise<void> {
  const seconds = ctx.manifest['postprocess-timeout'] ?? DEFAULT_POSTPROCESS_TIMEOUT;
  const t0 = performance.now();
  const r = await run('bwrap', args, { signal: ctx.signal, timeoutMs: seconds * 1000, env: { PATH: process.env.PATH }, cleanEnv: true, allowFailure: true });
  // exec.ts reports any kill as exit -1; nothing inside the sandbox can signal bwrap (another pid namespace), so a kill at the deadline is ours.
  if (r.exitCode === -1 && performance.now() - t0 >= seconds * 1000) {
    const message = `ran longer than postprocess-timeout (${seconds} s) and was killed`;
    throw new UserError(`${label} ${message}`, [
      { loc: locate(ctx.image.root, at), path: at.length > 1 ? `${at[0]}[${at[1]}]` : String(at[0]), message, hint: 'make the script faster, or raise postprocess-timeout (seconds)' },
    ]);
  }
  if (r.exitCode === 0) return;
  const tail = (text: string) => (text.trimEnd() ? text.trimEnd().split('\n').slice(-15) : []);
  const lines = [...tail(r.stdout), ...tail(r.stderr)];
  throw new UserError(`${label} failed with exit code ${r.exitCode}${lines.length ? `:\n    ${lines.join('\n    ')}` : ''}`);
}
