import chokidar from 'chokidar';
import path from 'node:path';
import { EXIT, formatDiagnostic, UserError } from '../diagnostics.js';
import { affectedImages, imageInputs } from '../gitops/graph.js';
import { ansiColors, diffManifests, formatManifestDiff, isEmptyDiff, plainColors } from '../gitops/manifest-diff.js';
import { validateAll } from '../images.js';
import { interruptSignal } from '../interrupt.js';
import { info, warn } from '../log.js';
import type { ImageManifest } from '../manifest/types.js';
import type { ValidManifest } from '../manifest/validate.js';
import { buildAndPublish } from '../pipeline.js';
import { isInside } from '../paths.js';
import { listImageFiles, openRepo, type Repo } from '../repo.js';
import { startServer } from '../serve/index.js';
import type { Command } from './command.js';

const DEBOUNCE_MS = 300;

export const watchCommand: Command = {
  name: 'watch',
  summary: 'rebuild and republish affected images whenever their inputs change',
  usage: 'treecast watch [--serve] [--port 8080]',
  help: [
    'Watches every input of every image (manifests, includes, overlays, files, scripts, treecast.yaml),',
    'debounces bursts of writes, re-validates, rebuilds only the affected images and republishes them,',
    'printing what changed. An invalid edit prints the error and keeps the last good version published.',
    'Options:',
    '  --serve      also serve the publish dir on 127.0.0.1',
    '  --port N     port for --serve (default 8080)',
  ].join('\n'),
  options: { serve: { type: 'boolean' }, port: { type: 'string' } },
  async run(ctx) {
    const repo = openRepo({ repo: ctx.repo });
    const signal = interruptSignal();
    const watcher = new Watcher(repo, signal);
    await watcher.initial();
    const server = ctx.values.serve ? await startServer({ dir: repo.publishDir, port: Number(ctx.values.port ?? 8080), log: (l) => process.stderr.write(l + '\n') }) : undefined;
    if (server) info(`serving ${repo.publishDir} at ${server.url}/`);
    const ignored = [repo.cacheDir, repo.publishDir, path.join(repo.root, '.git'), path.join(repo.root, 'node_modules')];
    const fsw = chokidar.watch(repo.root, {
      ignoreInitial: true,
      ignored: (p: string) => ignored.some((d) => isInside(d, p)),
      // Editors write in bursts or rename a temp file over the original: wait for the file to settle.
      awaitWriteFinish: { stabilityThreshold: 150, pollInterval: 50 },
    });
    fsw.on('all', (_event, p) => watcher.changed(path.relative(repo.root, p)));
    fsw.on('error', (err) => warn(`watch: ${(err as Error).message}`));
    await new Promise<void>((r) => fsw.on('ready', () => r()));
    info('watching for changes (Ctrl-C to stop)');
    await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
    await fsw.close();
    await server?.close();
    return EXIT.ok;
  },
};

/** Collects changed paths, debounces, and runs one rebuild at a time. */
class Watcher {
  private pending = new Set<string>();
  private timer?: NodeJS.Timeout;
  private running: Promise<void> = Promise.resolve();
  private lastGood = new Map<string, ImageManifest>();
  /** Paths changed while the repository did not validate: they still count once it does again. */
  private deferred = new Set<string>();
  private colors = process.stdout.isTTY && !process.env.NO_COLOR ? ansiColors : plainColors;

  constructor(
    private repo: Repo,
    private signal: AbortSignal,
  ) {}

  async initial(): Promise<void> {
    const images = this.validate();
    if (!images) return;
    await this.rebuild(images, images, ['initial build']);
  }

  changed(rel: string): void {
    this.pending.add(rel);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      const paths = [...this.pending];
      this.pending.clear();
      this.running = this.running.then(() => this.onChange(paths));
    }, DEBOUNCE_MS);
  }

  private validate(): ValidManifest[] | undefined {
    const r = validateAll(this.repo, listImageFiles(this.repo));
    if (r.diagnostics.length) {
      for (const d of r.diagnostics) process.stderr.write(formatDiagnostic(d) + '\n');
      process.stderr.write('watch: invalid input; the last good version stays published\n');
      return undefined;
    }
    return r.images;
  }

  private async onChange(changed: string[]): Promise<void> {
    if (this.signal.aborted) return;
    info(`\nchanged: ${changed.join(', ')}`);
    const images = this.validate();
    const paths = [...new Set([...this.deferred, ...changed])];
    if (!images) {
      // An invalid manifest of one image must not swallow edits to the others' inputs.
      for (const p of changed) this.deferred.add(p);
      return;
    }
    this.deferred.clear();
    const graph = images.map((i) => imageInputs(i, this.repo.root));
    const affected = affectedImages(graph, paths);
    // A manifest that is new, or was invalid before, counts as changed too.
    for (const img of images) if (!this.lastGood.has(img.manifest.name) && !affected.some((a) => a.name === img.manifest.name)) affected.push({ name: img.manifest.name, reasons: ['new or newly valid'] });
    if (!affected.length) {
      info('no image is affected');
      return;
    }
    for (const a of affected) {
      const img = images.find((i) => i.manifest.name === a.name)!;
      info(`${a.name}: ${a.reasons.join('; ')}`);
      const d = diffManifests(this.lastGood.get(a.name), img.manifest);
      if (!isEmptyDiff(d)) process.stdout.write(formatManifestDiff(d, this.colors).join('\n') + '\n');
    }
    const selected = images.filter((i) => affected.some((a) => a.name === i.manifest.name));
    await this.rebuild(images, selected, affected.map((a) => a.name));
  }

  private async rebuild(all: ValidManifest[], selected: ValidManifest[], why: string[]): Promise<void> {
    try {
      const r = await buildAndPublish(this.repo, all, selected, this.signal);
      for (const img of all) this.lastGood.set(img.manifest.name, img.manifest);
      for (const p of r.published) info(`published ${p.name} ${p.version} ${p.commit.slice(0, 12)}`);
    } catch (err) {
      if (err instanceof UserError) {
        for (const d of err.diagnostics) process.stderr.write(formatDiagnostic(d) + '\n');
        process.stderr.write(`watch: ${why.join(', ')}: ${err.message}; the last good version stays published\n`);
      } else throw err;
    }
  }
}
