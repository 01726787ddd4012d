import chokidar from 'chokidar';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { reportFailure } from '../cli.js';
import { EXIT, formatDiagnostic, UsageError, UserError } from '../diagnostics.js';
import { affectedImages, imageInputs, REPO_CONFIG } from '../gitops/graph.js';
import { ansiColors, diffManifests, formatManifestDiff, isEmptyDiff, plainColors } from '../gitops/manifest-diff.js';
import { validateAll } from '../images.js';
import { interruptSignal } from '../interrupt.js';
import { info, isDebug, warn } from '../log.js';
import type { ImageManifest } from '../manifest/types.js';
import type { ValidManifest } from '../manifest/validate.js';
import { buildAndPublish } from '../pipeline.js';
import { isInside } from '../paths.js';
import { listImageFiles, openRepo, privateDirBeside, type Repo } from '../repo.js';
import { startServer, type RunningServer } from '../serve/index.js';
import type { Command } from './command.js';

const DEBOUNCE_MS = 300;

/**
 * How long a round waits for the build lock when another treecast (a `ci` or
 * `build` sharing the cache dir) holds it. Waiting forever would stall every
 * later round behind it; after this the round fails like any other and the
 * next change retries. TREECAST_WATCH_LOCK_TIMEOUT (seconds) overrides it.
 */
function lockWaitMs(): number {
  const s = Number(process.env.TREECAST_WATCH_LOCK_TIMEOUT);
  return (Number.isFinite(s) && s > 0 ? s : 300) * 1000;
}

export const watchCommand: Command = {
  name: 'watch',
  summary: 'rebuild and republish affected images whenever their inputs change',
  usage: 'treecast watch [--serve] [--port 8080] [--no-remote-history]',
  help: [
    'Watches every input of every image (manifests, includes, overlays, files, scripts, treecast.yaml),',
    'debounces bursts of writes, re-validates, rebuilds only the affected images and republishes them,',
    'printing what changed. Any failed round (an invalid edit, a failing postprocess, a full disk, a',
    'missing program, the build lock held by someone else for longer than TREECAST_WATCH_LOCK_TIMEOUT',
    'seconds (default 300), even a bug in treecast) prints the error and keeps the last good version',
    'published and served; the next change retries what failed. A changed treecast.yaml is reloaded',
    '(an invalid one is reported and the previous configuration kept until it is fixed); when its',
    'publish dir changes, --serve moves to the new dir once the first publish there succeeds.',
    'Each round is what `treecast ci` does for the affected images: with publish.url in treecast.yaml it',
    'continues from the published tree, and release streams whose refs are behind their pins are moved.',
    'Options:',
    '  --serve      also serve the publish dir on 127.0.0.1',
    '  --port N     port for --serve (default 8080; 0 picks a free one)',
    '  --no-remote-history  do not read publish.url: build from the local cache and publish dir only (offline)',
  ].join('\n'),
  options: { serve: { type: 'boolean' }, port: { type: 'string' }, 'no-remote-history': { type: 'boolean' } },
  async run(ctx) {
    const port = Number(ctx.values.port ?? 8080);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--port must be a port number, not ${ctx.values.port}`);
    // An invalid treecast.yaml at start ends here (exit 1, located error): there is no previous configuration to keep.
    const repo = openRepo({ repo: ctx.repo });
    const signal = interruptSignal();
    const watcher = new Watcher(repo, signal, !ctx.values['no-remote-history']);
    // Last line of defence for a watch that runs for days: a promise nobody handles is a bug in
    // treecast, reported as such, and must not end the process (Node's default for it).
    const onUnhandled = (reason: unknown) => watcher.internal(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      await watcher.initial();
      if (ctx.values.serve && !signal.aborted) await watcher.serve(port);
      if (signal.aborted) return EXIT.ok;
      const fsw = chokidar.watch(repo.root, {
        ignoreInitial: true,
        ignored: (p: string) => watcher.isOwnOutput(p),
        // Editors write in bursts or rename a temp file over the original: wait for the file to settle.
        awaitWriteFinish: { stabilityThreshold: 150, pollInterval: 50 },
      });
      fsw.on('all', (_event, p) => watcher.changed(path.relative(repo.root, p)));
      // A watch error (too many watches, a directory that vanished) is not a reason to stop watching the rest.
      fsw.on('error', (err) => warn(`watch: ${err instanceof Error ? err.message : String(err)}`));
      await new Promise<void>((r) => fsw.on('ready', () => r()));
      info('watching for changes (Ctrl-C to stop)');
      if (!signal.aborted) await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
      // The running round sees the abort (its children are killed) and cleans up before we return.
      await watcher.stop();
      await fsw.close().catch((err: unknown) => warn(`watch: closing the file watcher: ${err instanceof Error ? err.message : String(err)}`));
      return EXIT.ok;
    } finally {
      await watcher.closeServer();
      process.off('unhandledRejection', onUnhandled);
    }
  },
};

/** Collects changed paths, debounces, and runs one round (reload, validate, build, publish) at a time. */
class Watcher {
  private pending = new Set<string>();
  private timer?: NodeJS.Timeout;
  private running: Promise<void> = Promise.resolve();
  private lastGood = new Map<string, ImageManifest>();
  /**
   * Paths of rounds that did not publish (the repository did not validate, the disk was full, ...):
   * they still count in the next round, whatever changes then.
   */
  private deferred = new Set<string>();
  /** Every cache and publish dir this watch has used: treecast's own writes there are never input changes. */
  private ownDirs = new Set<string>();
  private server?: RunningServer;
  /** The directory `server` serves: the publish dir of the last successful publish. */
  private served?: string;
  private colors = process.stdout.isTTY && !process.env.NO_COLOR ? ansiColors : plainColors;

  constructor(
    private repo: Repo,
    private signal: AbortSignal,
    /** Read publish.url's tree each round (when treecast.yaml names one), like build and ci. */
    private remoteHistory: boolean,
  ) {
    this.noteOwnDirs();
  }

  isOwnOutput(p: string): boolean {
    return [...this.ownDirs].some((d) => isInside(d, p));
  }

  async initial(): Promise<void> {
    try {
      const images = this.validate();
      if (!images) return;
      await this.rebuild(images, images);
    } catch (err) {
      // lastGood stays empty, so the next round builds every image again ("new or newly valid").
      this.report(err, 'initial build');
    }
  }

  async serve(port: number): Promise<void> {
    // The initial build may have failed before anything was published: serve the (empty) dir anyway,
    // so the server is up when the first good round publishes into it.
    mkdirSync(this.repo.publishDir, { recursive: true });
    try {
      this.server = await startServer({ dir: this.repo.publishDir, privateDir: this.repo.privateDir, port, log: (l) => process.stderr.write(l + '\n') });
    } catch (err) {
      // At start a busy port ends the watch (exit 1), as it does for `treecast serve`: nothing is being served yet.
      throw new UserError(`cannot serve ${this.repo.publishDir} on 127.0.0.1:${port}: ${err instanceof Error ? err.message : String(err)} (pick another port with --port)`);
    }
    this.served = this.repo.publishDir;
    info(`serving ${this.served} at ${this.server.url}/`);
  }

  async closeServer(): Promise<void> {
    await this.server?.close().catch((err: unknown) => warn(`watch: stopping the server: ${err instanceof Error ? err.message : String(err)}`));
    this.server = undefined;
  }

  changed(rel: string): void {
    if (this.signal.aborted) return;
    this.pending.add(rel);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.flush(), DEBOUNCE_MS);
  }

  /** Stops scheduling rounds and waits for the running one (aborted by the interrupt signal) to end. */
  async stop(): Promise<void> {
    clearTimeout(this.timer);
    await this.running;
  }

  /** A bug in treecast: the message (the stack at --debug) and the note that watching goes on. */
  internal(err: unknown): void {
    try {
      reportFailure(err, isDebug());
      process.stderr.write('watch: internal error, the watch continues\n');
    } catch {
      /* reporting must never be what ends the watch */
    }
  }

  private flush(): void {
    const paths = [...this.pending];
    this.pending.clear();
    // round() reports its own failures; the catch keeps the chain resolved so one bad round never blocks the next.
    this.running = this.running.then(() => this.round(paths)).catch((err: unknown) => this.internal(err));
  }

  private async round(changed: string[]): Promise<void> {
    if (this.signal.aborted) return;
    info(`\nchanged: ${changed.join(', ')}`);
    const paths = [...new Set([...this.deferred, ...changed])];
    this.deferred.clear();
    let done = false;
    try {
      done = await this.apply(paths);
    } catch (err) {
      this.report(err, 'this round');
    }
    if (!done) for (const p of paths) this.deferred.add(p);
  }

  /** One round; false when it did not get to publish (the paths are retried next round). */
  private async apply(changed: string[]): Promise<boolean> {
    let paths = changed;
    if (paths.includes(REPO_CONFIG) && !this.reloadConfig()) {
      // Keep the previous configuration for the other changes; treecast.yaml counts again once it is valid.
      this.deferred.add(REPO_CONFIG);
      paths = paths.filter((p) => p !== REPO_CONFIG);
    }
    const images = this.validate();
    if (!images) return false;
    for (const name of this.lastGood.keys()) {
      if (images.some((i) => i.manifest.name === name)) continue;
      info(`${name}: no longer an image of the repository (removed, or outside treecast.yaml images); its published versions stay`);
      this.lastGood.delete(name);
    }
    const graph = images.map((i) => imageInputs(i, this.repo.root));
    const affected = affectedImages(graph, paths);
    // A manifest that is new, or was invalid before, counts as changed too.
    for (const img of images) if (!this.lastGood.has(img.manifest.name) && !affected.some((a) => a.name === img.manifest.name)) affected.push({ name: img.manifest.name, reasons: ['new or newly valid'] });
    if (!affected.length) {
      info('no image is affected');
      return true;
    }
    for (const a of affected) {
      const img = images.find((i) => i.manifest.name === a.name)!;
      info(`${a.name}: ${a.reasons.join('; ')}`);
      const d = diffManifests(this.lastGood.get(a.name), img.manifest);
      if (!isEmptyDiff(d)) process.stdout.write(formatManifestDiff(d, this.colors).join('\n') + '\n');
    }
    const selected = images.filter((i) => affected.some((a) => a.name === i.manifest.name));
    await this.rebuild(images, selected);
    return true;
  }

  /** Re-reads treecast.yaml; false (with the located errors printed) when it is invalid and the old configuration stays. */
  private reloadConfig(): boolean {
    let next: Repo;
    try {
      next = openRepo({ repo: this.repo.root });
    } catch (err) {
      if (!(err instanceof UserError)) throw err;
      for (const d of err.diagnostics) process.stderr.write(formatDiagnostic(d) + '\n');
      process.stderr.write(`watch: ${err.message}; keeping the previous configuration until it is fixed\n`);
      return false;
    }
    const prev = this.repo;
    const what: string[] = [];
    if (JSON.stringify(next.config) !== JSON.stringify(prev.config)) what.push('configuration');
    if (next.cacheDir !== prev.cacheDir) what.push(`cache dir ${prev.cacheDir} -> ${next.cacheDir}`);
    if (next.publishDir !== prev.publishDir) what.push(`publish dir ${prev.publishDir} -> ${next.publishDir}`);
    this.repo = next;
    this.noteOwnDirs();
    info(what.length ? `treecast.yaml reloaded: ${what.join('; ')}` : 'treecast.yaml reloaded (no change)');
    if (this.server && next.publishDir !== this.served) info(`the server keeps serving ${this.served} until the first publish to ${next.publishDir} succeeds`);
    return true;
  }

  private noteOwnDirs(): void {
    for (const d of [this.repo.cacheDir, this.repo.publishDir, path.join(this.repo.root, '.git'), path.join(this.repo.root, 'node_modules')]) this.ownDirs.add(d);
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

  private async rebuild(all: ValidManifest[], selected: ValidManifest[]): Promise<void> {
    const r = await buildAndPublish(this.repo, all, selected, { signal: this.signal, remoteHistory: this.remoteHistory, lockTimeoutMs: lockWaitMs() });
    for (const img of all) this.lastGood.set(img.manifest.name, img.manifest);
    for (const p of r.published) info(`published ${p.name} ${p.version} ${p.commit.slice(0, 12)}`);
    for (const s of r.streams.filter((x) => x.moved)) info(`stream ${s.stream} of ${s.image} moved to ${s.version} ${s.commit.slice(0, 12)}`);
    if (!r.published.length) info('nothing new to publish: the affected images are up to date');
    await this.followPublishDir();
  }

  /** After a publish to a new publish dir: serve that dir on the same port (the old one if that fails). */
  private async followPublishDir(): Promise<void> {
    if (!this.server || this.served === this.repo.publishDir) return;
    const old = this.served!;
    const port = this.server.port;
    await this.closeServer();
    for (const dir of [this.repo.publishDir, old]) {
      try {
        // The private tree beside each publish dir (Repo.privateDir for the new one), as publish writes it.
        this.server = await startServer({ dir, privateDir: dir === this.repo.publishDir ? this.repo.privateDir : privateDirBeside(dir), port, log: (l) => process.stderr.write(l + '\n') });
        this.served = dir;
        info(dir === old ? `still serving ${old} at ${this.server.url}/` : `publish dir changed: now serving ${dir} at ${this.server.url}/ (was ${old})`);
        return;
      } catch (err) {
        warn(`watch: cannot serve ${dir} on port ${port}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    warn('watch: the server is stopped; the watch goes on building and publishing');
  }

  /** A failed round: what went wrong (as the CLI would say it), and that the last good version stays. */
  private report(err: unknown, what: string): void {
    if (this.signal.aborted) {
      info(`watch: ${what} interrupted`);
      return;
    }
    try {
      const code = reportFailure(err, isDebug());
      if (code === EXIT.internal) process.stderr.write('watch: internal error, the watch continues\n');
      process.stderr.write(`watch: ${what} failed; the last good version stays published${this.server ? ` and served from ${this.served}` : ''}; the next change retries\n`);
    } catch {
      /* reporting must never be what ends the watch */
    }
  }
}
