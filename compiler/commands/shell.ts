import path from 'node:path';
import { EXIT, UsageError } from '../diagnostics.js';
import { interruptSignal } from '../interrupt.js';
import { openRepo } from '../repo.js';
import { checkCaptureDir } from '../shell/capture.js';
import { resolveImageVersion } from '../shell/image-version.js';
import { runSession } from '../shell/session.js';
import type { Command } from './command.js';

export const shellCommand: Command = {
  name: 'shell',
  summary: 'step into a throwaway copy of a built or published image version, in the postprocess sandbox',
  usage: 'treecast shell <image>[@version] [--from PUBLISH_DIR] [--capture DIR] [-- CMD ARG...]',
  help: [
    'Runs a login shell (the image\'s /bin/bash, else /bin/sh -l) or CMD inside the image, in the sandbox',
    'postprocess scripts get (docs/sandbox.md: no network, nothing of the host visible), on an overlay of a',
    'checkout of the version: the image itself (ref, commit, artifacts) never changes, and the overlay is',
    'thrown away at the end. The exit code is the command\'s. /etc is the image\'s /usr/etc (the booted layout).',
    '<image> is an image name (its newest build), name@version, an OSTree ref or a commit id, looked up in',
    'the build cache and then the publish dir. docs/shell.md has the fix-capture-commit workflow.',
    'Options:',
    '  --from DIR     look only in this publish dir (its repo/ and images/)',
    '  --capture DIR  afterwards, write what the session changed as an overlay into DIR (new or empty, inside',
    '                 the repository) and the files:/remove-files:/postprocess: entries an overlay cannot',
    '                 carry to DIR.capture.yaml (also printed)',
  ].join('\n'),
  options: { from: { type: 'string' }, capture: { type: 'string' } },
  async run(ctx) {
    const [spec, ...command] = ctx.positionals;
    if (!spec) throw new UsageError('shell needs an image: treecast shell edge-host [-- CMD...]');
    const repo = openRepo({ repo: ctx.repo });
    const capture = ctx.values.capture !== undefined ? path.resolve(String(ctx.values.capture)) : undefined;
    if (capture) checkCaptureDir(repo.root, capture);
    const from = ctx.values.from !== undefined ? path.resolve(String(ctx.values.from)) : undefined;
    const v = await resolveImageVersion(repo, spec, from);
    const r = await runSession(repo, v, { command, capture, signal: interruptSignal() });
    if (r.capture) {
      process.stdout.write(r.capture.fragment);
      process.stderr.write(`treecast: captured ${r.capture.plan.summary.length} changes: overlay ${capture}, manifest fragment ${r.capture.fragmentFile}\n`);
    }
    return r.exitCode < 0 ? EXIT.invalid : r.exitCode;
  },
};
