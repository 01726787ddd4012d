/**
 * Issue #13's benchmark: treecast against the raw tools, in one run on one
 * machine, each figure printed with its target and PASS/MISS (never a
 * failing exit for a MISS: these are measurements, not tests).
 *
 *   npx tsx bench/ratios.ts [--image edge-host|tiny] [--out BENCHMARKS.md] [--keep]
 *
 * It works in a scratch clone of this repository's HEAD (uncommitted edits
 * are not measured) with its own TREECAST_CACHE_DIR and TREECAST_PUBLISH_DIR,
 * node_modules symlinked from here. Downloaded .debs come from the per-user
 * cache (TREECAST_APT_CACHE, else ~/.cache/treecast/apt-archives), which the
 * raw script shares, so downloads distort neither side.
 *
 * With --image edge-host (the default, 15-25 minutes on 2 cores):
 *   1. bench/raw-build.sh (mmdebstrap + dracut + ostree commit + mksquashfs +
 *      tar|zstd) against a cold `treecast build edge-host`; the clone's
 *      edge-host gets a squashfs output so both sides do the same work;
 *   2. one overlay file changed (overlays/motd/etc/motd), rebuild, against
 *      cold; with the manifest's outputs and with the ostree output alone;
 *   3. a no-op `treecast build` of every example against cold;
 *   4. bytes a client's `ostree pull` fetches from `treecast serve` for the
 *      one-file update (static delta) against the tarball's size;
 *   5. the peak RSS (VmHWM) of treecast's own node process, children excluded;
 *   6. `treecast watch` with the ostree output alone: from saving a one-line
 *      overlay edit to the new version listed by `treecast serve`'s index.json.
 * --image tiny runs 2-5 on images/tiny.yaml in seconds (a smoke run: there
 * is no raw script for it, and its figures say nothing about Debian images).
 */
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServe as startServeProcess } from '../test/helpers/serve.js';

const HERE = path.dirname(new URL(import.meta.url).pathname);
const SOURCE_REPO = path.resolve(HERE, '..');

interface Args { image: 'edge-host' | 'tiny'; out?: string; keep: boolean }

function parseArgs(argv: string[]): Args {
  const a: Args = { image: 'edge-host', keep: false };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i]!;
    if (v === '--image') {
      const img = argv[++i];
      if (img !== 'edge-host' && img !== 'tiny') throw new Error(`--image: "${img}" is not edge-host or tiny`);
      a.image = img;
    } else if (v === '--out') a.out = argv[++i];
    else if (v === '--keep') a.keep = true;
    else throw new Error(`unknown argument "${v}" (usage: npx tsx bench/ratios.ts [--image edge-host|tiny] [--out BENCHMARKS.md] [--keep])`);
  }
  return a;
}

const MiB = 1024 * 1024;
const log = (s: string) => process.stdout.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${s}\n`);
const sh = (cmd: string, args: string[], cwd?: string) => execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
const tryVersion = (cmd: string, args: string[]) => {
  try {
    return sh(cmd, args).split('\n')[0]!;
  } catch {
    return `${cmd}: not found`;
  }
};

/** `ostree --version` is YAML-ish: the version is on its second line. */
function ostreeVersion(): string {
  try {
    return `ostree ${/Version: '([^']+)'/.exec(sh('ostree', ['--version']))?.[1] ?? '?'}`;
  } catch {
    return 'ostree: not found';
  }
}

const fmtBytes = (n: number) => (n >= MiB ? `${(n / MiB).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`);

/** VmHWM of a live process in KiB: its own peak resident set, never its children's. */
function vmHwmKiB(pid: number): number | undefined {
  try {
    const m = /^VmHWM:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined; // exited between two polls: the last value read stands
  }
}

/**
 * SIGINT/SIGTERM stop the run and still write the report, marked partial:
 * the command running then is stopped (treecast by its own interrupt
 * handling, the raw script as a process group) and fails, which ends the run.
 */
let current: { pid: number; group: boolean } | undefined;
let stopping = false;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    stopping = true;
    log(`${sig}: stopping the current command, then writing what was measured`);
    if (current) {
      try {
        process.kill(current.group ? -current.pid : current.pid, 'SIGTERM');
      } catch {
        // already gone
      }
    }
  });
}

interface Run { label: string; argv: string[]; seconds: number; peakRssKiB: number; stdout: string; stderr: string }

class Bench {
  readonly tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'treecast-bench-'));
  readonly repo = path.join(this.tmp, 'repo');
  readonly env: NodeJS.ProcessEnv = { ...process.env, TREECAST_CACHE_DIR: path.join(this.tmp, 'cache'), TREECAST_PUBLISH_DIR: path.join(this.tmp, 'public') };
  readonly runs: Run[] = [];
  readonly logFile = path.join(this.tmp, 'treecast.log');

  /**
   * One treecast command in the clone, wall-clock timed. Its VmHWM is polled
   * every 200 ms until it exits (no hook reports it at exit; the kernel keeps
   * the high-water mark, so the last value read is at most 200 ms of growth
   * short of the true peak).
   */
  async treecast(label: string, args: string[]): Promise<Run> {
    if (stopping) throw new Error(`stopped by a signal before ${label}`);
    log(`${label}: treecast ${args.join(' ')}`);
    const bin = path.join(this.repo, 'compiler/bin/treecast.mjs');
    const t0 = performance.now();
    const child = spawn(process.execPath, [bin, ...args], { cwd: this.repo, env: this.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      fs.appendFileSync(this.logFile, d);
    });
    current = { pid: child.pid!, group: false };
    let peak = 0;
    const poll = setInterval(() => (peak = Math.max(peak, vmHwmKiB(child.pid!) ?? 0)), 200);
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    clearInterval(poll);
    current = undefined;
    const seconds = (performance.now() - t0) / 1000;
    if (code !== 0) throw new Error(`${label}: treecast ${args.join(' ')} exited ${code}:\n${stderr.slice(-3000)}`);
    const r = { label, argv: ['treecast', ...args], seconds, peakRssKiB: peak, stdout, stderr };
    this.runs.push(r);
    log(`${label}: ${seconds.toFixed(1)} s, peak RSS ${(peak / 1024).toFixed(0)} MiB`);
    return r;
  }

  /** Change a file of the clone and commit it, as a push would. */
  edit(rel: string, change: (text: string) => string, message: string): void {
    const p = path.join(this.repo, rel);
    fs.writeFileSync(p, change(fs.readFileSync(p, 'utf8')));
    sh('git', ['-c', 'user.name=bench', '-c', 'user.email=bench@localhost', 'commit', '-q', '-m', message, '--', rel], this.repo);
  }
}

/** "  output tarball  15.2s  ..." lines of a build's log: each output's own time (they run in parallel). */
function outputSeconds(stderr: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of stderr.matchAll(/^\s+output (\S+)\s+([\d.]+)s/gm)) out[m[1]!] = Number(m[2]);
  return out;
}

interface ImageResult { name: string; commit: string; version: string; cached?: boolean; artifacts?: { type: string; path: string; size: number }[] }
const builtImages = (r: Run): ImageResult[] => (JSON.parse(r.stdout) as { images: ImageResult[] }).images;

/** Serve the publish dir with the real `treecast serve` of the scratch clone (test/helpers/serve.ts), access log to a file. */
async function startServe(b: Bench): Promise<{ url: string; stop: () => Promise<number>; logFile: string }> {
  const logFile = path.join(b.tmp, 'serve.log');
  const { child, url } = await startServeProcess(b.env.TREECAST_PUBLISH_DIR!, logFile, { bin: path.join(b.repo, 'compiler/bin/treecast.mjs'), env: b.env, cwd: b.repo, startTimeoutMs: 30_000 });
  const stop = async () => {
    const hwm = vmHwmKiB(child.pid!) ?? 0;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
    return hwm;
  };
  return { url, stop, logFile };
}

/**
 * Start `treecast watch`, wait until it is idle, append a line to an overlay
 * file, and poll `treecast serve`'s index.json (every 100 ms) until the image's
 * latest version changes: the time a person waits between saving and the new
 * version being served.
 */
async function watchEditToServed(b: Bench, overlayFile: string, image: string): Promise<{ seconds: number; from: string; to: string }> {
  const serve = await startServe(b);
  const latest = async () => {
    const index = (await (await fetch(`${serve.url}/index.json`)).json()) as { images: { name: string; latest?: string; versions: { version: string }[] }[] };
    const img = index.images.find((i) => i.name === image);
    return img?.latest ?? img?.versions.at(-1)?.version ?? '';
  };
  const bin = path.join(b.repo, 'compiler/bin/treecast.mjs');
  const child = spawn(process.execPath, [bin, 'watch', '--no-remote-history'], { cwd: b.repo, env: b.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
    fs.appendFileSync(b.logFile, d);
  });
  current = { pid: child.pid!, group: false };
  try {
    // Idle: watch says it is watching, and nothing has changed for 3 s.
    const t0 = performance.now();
    while (!/watching/i.test(stderr)) {
      if (performance.now() - t0 > 120_000) throw new Error(`treecast watch did not start:\n${stderr.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    await new Promise((r) => setTimeout(r, 3000));
    const from = await latest();
    const p = path.join(b.repo, overlayFile);
    const saved = performance.now();
    fs.appendFileSync(p, '# bench: saved while watch runs\n');
    for (;;) {
      const now = await latest();
      if (now && now !== from) return { seconds: (performance.now() - saved) / 1000, from, to: now };
      if (performance.now() - saved > 600_000) throw new Error(`watch published no new version within 600 s:\n${stderr.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    current = undefined;
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    await serve.stop();
  }
}

/** GET lines of the access log from line `from` on: requests, bytes sent, and how many were static-delta parts. */
function servedSince(logFile: string, from: number): { requests: number; bytes: number; deltaRequests: number; lines: number } {
  const lines = fs.readFileSync(logFile, 'utf8').split('\n').filter((l) => /"(GET|HEAD) /.test(l));
  let bytes = 0;
  let deltaRequests = 0;
  const mine = lines.slice(from);
  for (const l of mine) {
    const m = /"(?:GET|HEAD) (\S+)" (\d+) (\d+)/.exec(l);
    if (!m) continue;
    bytes += Number(m[3]);
    if (m[1]!.includes('/deltas/')) deltaRequests++;
  }
  return { requests: mine.length, bytes, deltaRequests, lines: lines.length };
}

/** The access log once the server has logged every finished request (a line is written when its response ends). */
async function settled(logFile: string): Promise<void> {
  let last = -1;
  for (;;) {
    const n = fs.readFileSync(logFile, 'utf8').length;
    if (n === last) return;
    last = n;
    await new Promise((r) => setTimeout(r, 300));
  }
}

interface Figure { what: string; value: string; target: string; verdict: 'PASS' | 'MISS' | 'n/a' }

function verdict(ok: boolean | undefined): Figure['verdict'] {
  return ok === undefined ? 'n/a' : ok ? 'PASS' : 'MISS';
}

async function main(): Promise<number> {
  const a = parseArgs(process.argv.slice(2));
  const started = new Date();
  const machine = {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? '?',
    ramGiB: (os.totalmem() / 1024 ** 3).toFixed(1),
    kernel: `${os.type()} ${os.release()}`,
    load: os.loadavg().map((l) => l.toFixed(2)).join(' '),
    node: process.version,
    tools: [ostreeVersion(), tryVersion('mmdebstrap', ['--version']), tryVersion('mksquashfs', ['-version']), tryVersion('zstd', ['--version']).replace(/\*/g, '')].map((s) => s.replace(/\s+/g, ' ').trim()),
    commit: sh('git', ['rev-parse', '--short', 'HEAD'], SOURCE_REPO),
  };
  const b = new Bench();
  log(`scratch dir ${b.tmp}; load average at start ${machine.load}`);
  const figures: Figure[] = [];
  const notes: string[] = [];
  const commands: string[] = [];
  const raw: Record<string, number> = {};
  let error: unknown;
  let serveRunning: (() => Promise<number>) | undefined;
  const image = a.image;
  const overlayFile = image === 'tiny' ? 'overlays/tiny-rootfs/usr/lib/os-release' : 'overlays/motd/etc/motd';
  const manifest = `images/${image}.yaml`;

  try {
    sh('git', ['clone', '--quiet', SOURCE_REPO, b.repo]);
    fs.symlinkSync(path.join(SOURCE_REPO, 'node_modules'), path.join(b.repo, 'node_modules'));

    if (image === 'edge-host') {
      // Both sides do the same work: the raw script commits, writes a squashfs and a plain
      // tar|zstd. The example's edge-host writes a disk image and an installer-layout tarball
      // instead (extra work the raw script does not do), so the clone's edge-host gets
      // exactly the raw script's outputs.
      b.edit(
        manifest,
        (t) => t.replace(/^outputs:\n(?:[ \t]+.*\n?)+/m, 'outputs:\n  # bench: the same work as bench/raw-build.sh\n  ostree: { bootable: true }\n  squashfs: { compression: zstd }\n  tarball: { compression: zstd }\n'),
        'bench: edge-host writes what the raw script writes',
      );
      const rawDir = path.join(b.tmp, 'raw');
      log('raw tools: bench/raw-build.sh (mmdebstrap + dracut + ostree commit + mksquashfs + tar|zstd)');
      commands.push(`bash bench/raw-build.sh REPO ${rawDir}`);
      const out = await new Promise<string>((resolve, reject) => {
        const c = spawn('bash', [path.join(HERE, 'raw-build.sh'), b.repo, rawDir], { env: b.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
        current = { pid: c.pid!, group: true };
        let so = '';
        let se = '';
        c.stdout.setEncoding('utf8').on('data', (d: string) => {
          so += d;
          process.stdout.write(d.replace(/^(?=.)/gm, '  raw: '));
        });
        c.stderr.setEncoding('utf8').on('data', (d: string) => (se += d));
        c.on('exit', (code) => {
          current = undefined;
          if (code === 0) resolve(so);
          else reject(new Error(`bench/raw-build.sh exited ${code}:\n${se.slice(-3000)}`));
        });
      }).catch((err: Error) => {
        // Without the floor the other figures still stand: note it and go on.
        if (stopping) throw err;
        log(err.message);
        notes.push(`The plain script failed, so there is no floor to compare with: ${err.message.split('\n').slice(0, 6).join(' / ')}`);
        return '';
      });
      for (const m of out.matchAll(/^(?:phase (\S+)|(total)|size (\S+)) (\d+(?:\.\d+)?)$/gm)) raw[m[1] ?? (m[2] ? 'total' : `size-${m[3]}`)] = Number(m[4]);
      // The raw tree is no longer needed; its 0.5 GB would only compete for page cache.
      fs.rmSync(rawDir, { recursive: true, force: true });
    }

    // What every command pays before it does anything: node, tsx compiling the sources, the CLI.
    await b.treecast('start-up alone', ['--help']);
    commands.push('treecast --help   # start-up cost of every command');

    // 1. Cold build.
    const cold = await b.treecast('cold build', ['--json', 'build', image]);
    commands.push(`treecast --json build ${image}   # empty cache dir`);
    const coldOutputs = outputSeconds(cold.stderr);
    const coldImg = builtImages(cold)[0]!;
    const tarball = coldImg.artifacts?.find((x) => x.type === 'tarball');
    if (raw.total) {
      const ratio = cold.seconds / raw.total;
      figures.push({ what: 'cold build / plain script', value: `${cold.seconds.toFixed(1)} s / ${raw.total.toFixed(1)} s = ${ratio.toFixed(2)}x`, target: '<= 1.15x', verdict: verdict(ratio <= 1.15) });
    }

    // 4 (first half). Publish v1; a client holds it (pull-local: its own bytes are not the update's).
    await b.treecast('publish v1', ['publish', image]);
    commands.push(`treecast publish ${image}`);
    const client = path.join(b.tmp, 'client');
    const ref = sh('ostree', ['refs', `--repo=${path.join(b.env.TREECAST_PUBLISH_DIR!, 'repo')}`]).split('\n').find((r) => r.includes(image === 'tiny' ? 'tiny/' : '/edge-host/'))!;
    sh('ostree', ['init', `--repo=${client}`, '--mode=bare-user']);
    const serve = await startServe(b);
    serveRunning = serve.stop;
    sh('ostree', ['remote', 'add', `--repo=${client}`, '--no-gpg-verify', 'bench', `${serve.url}/repo`]);
    sh('ostree', ['pull-local', `--repo=${client}`, '--remote=bench', path.join(b.env.TREECAST_PUBLISH_DIR!, 'repo'), ref]);

    // 2. One overlay file changed: rebuild with the manifest's outputs.
    b.edit(overlayFile, (t) => t + '# bench: one changed line\n', 'bench: one overlay file changed');
    const one = await b.treecast('one-file rebuild', ['--json', 'build', image]);
    commands.push(`echo '# bench: one changed line' >> ${overlayFile}; git commit; treecast --json build ${image}`);
    const oneOutputs = outputSeconds(one.stderr);
    figures.push({ what: `one-file rebuild / cold, outputs ${Object.keys(oneOutputs).join('+') || 'ostree'}`, value: `${one.seconds.toFixed(1)} s / ${cold.seconds.toFixed(1)} s = ${(one.seconds / cold.seconds).toFixed(3)}x`, target: '(none: the outputs are rewritten)', verdict: 'n/a' });
    if (raw.mksquashfs && raw['tar-zstd']) {
      const floor = raw.mksquashfs! + raw['tar-zstd']!;
      const ratio = one.seconds / floor;
      figures.push({ what: 'one-file rebuild with squashfs+tarball / plain script writing those two from a ready tree', value: `${one.seconds.toFixed(1)} s / ${floor.toFixed(1)} s = ${ratio.toFixed(2)}x`, target: '<= 1.15x', verdict: verdict(ratio <= 1.15) });
    }

    // 4. Publish v2 and pull it over HTTP from treecast serve.
    await b.treecast('publish v2', ['publish', image]);
    const mark = servedSince(serve.logFile, 0).lines;
    log(`ostree pull ${ref} from ${serve.url}/repo`);
    const t0 = performance.now();
    const pullOut = sh('ostree', ['pull', `--repo=${client}`, 'bench', ref]);
    const pullSeconds = (performance.now() - t0) / 1000;
    commands.push(`ostree pull --repo=CLIENT bench ${ref}   # CLIENT holds v1; bytes from treecast serve's access log`);
    await settled(serve.logFile);
    const pulled = servedSince(serve.logFile, mark);
    serveRunning = undefined;
    const serveHwm = await serve.stop();
    b.runs.push({ label: 'serve (during the pull)', argv: ['treecast', 'serve'], seconds: NaN, peakRssKiB: serveHwm, stdout: '', stderr: '' });
    const v2 = builtImages(one)[0]!;
    const tarV2 = v2.artifacts?.find((x) => x.type === 'tarball') ?? tarball;
    if (tarV2) {
      const pct = (100 * pulled.bytes) / tarV2.size;
      figures.push({ what: 'one-file update pulled / full tarball', value: `${fmtBytes(pulled.bytes)} / ${fmtBytes(tarV2.size)} = ${pct.toFixed(4)}% (${pulled.requests} requests, ${pulled.deltaRequests} of static-delta parts, ${pullSeconds.toFixed(2)} s)`, target: '<= 1%', verdict: verdict(pct <= 1) });
    }
    if (!pulled.deltaRequests) notes.push('The update pull fetched no static-delta part: the client took loose objects.');
    notes.push(`ostree pull said: ${pullOut.split('\n').filter(Boolean).slice(-1)[0] ?? '(nothing)'}`);

    // 2. The ostree output alone: change the outputs (rebuild untimed), then one overlay file again.
    // The manifest's own ostree line stays (edge-host's bootable: true), the other outputs go.
    b.edit(manifest, (t) => t.replace(/^outputs:\n(?:[ \t]+.*\n?)+/m, (block) => `outputs:\n${/^[ \t]+ostree:.*$/m.exec(block)?.[0] ?? '  ostree: {}'}\n`), 'bench: the ostree output alone');
    await b.treecast('prime ostree-alone', ['--json', 'build', image]);
    b.edit(overlayFile, (t) => t + '# bench: another changed line\n', 'bench: one overlay file changed again');
    const oneOstree = await b.treecast('one-file rebuild, ostree alone', ['--json', 'build', image]);
    commands.push(`(outputs: ostree alone) echo '# ...' >> ${overlayFile}; git commit; treecast --json build ${image}`);
    // The cold build also wrote the other outputs in parallel; an ostree-alone
    // cold build saves about the longest of them. Compared against both.
    const longestOutput = Math.max(0, ...Object.entries(coldOutputs).filter(([k]) => k !== 'ostree').map(([, v]) => v));
    const coldOstree = cold.seconds - longestOutput;
    const r2 = oneOstree.seconds / coldOstree;
    figures.push({ what: 'one-file rebuild, ostree output alone / cold (cold less its longest non-ostree output)', value: `${oneOstree.seconds.toFixed(1)} s / ${coldOstree.toFixed(1)} s = ${r2.toFixed(3)}x (against the full cold ${(oneOstree.seconds / cold.seconds).toFixed(3)}x)`, target: '<= 0.10x', verdict: verdict(r2 <= 0.1) });

    // 3. No-op rebuild of every example: the first `build` builds what was never built (untimed).
    // --image tiny stays with tiny: every example would mean a Debian build.
    const every = image === 'tiny' ? ['--json', 'build', 'tiny'] : ['--json', 'build'];
    await b.treecast('build every example (untimed)', every);
    const noop = await b.treecast('no-op rebuild of every example', every);
    commands.push(`treecast ${every.join(' ')}   # nothing changed since the last build`);
    const rebuilt = builtImages(noop).filter((i) => !i.cached).map((i) => i.name);
    if (rebuilt.length) notes.push(`The no-op build rebuilt ${rebuilt.join(', ')}: it was not a no-op.`);
    const r3 = noop.seconds / cold.seconds;
    figures.push({ what: `no-op rebuild of every example (${builtImages(noop).length} images) / cold`, value: `${noop.seconds.toFixed(1)} s / ${cold.seconds.toFixed(1)} s = ${r3.toFixed(3)}x`, target: '<= 0.05x', verdict: verdict(r3 <= 0.05) });

    // 6. watch: the image alone (treecast.yaml images), its ostree output alone (still so since 2).
    const config = path.join(b.repo, 'treecast.yaml');
    if (!fs.existsSync(config)) fs.writeFileSync(config, '');
    sh('git', ['add', 'treecast.yaml'], b.repo);
    // The fleet's nodes boot diskless-node, which this repository no longer lists.
    if (fs.existsSync(path.join(b.repo, 'nodes.yaml'))) sh('git', ['rm', '-q', 'nodes.yaml'], b.repo);
    b.edit('treecast.yaml', (t) => `${t}\nimages: [${manifest}]   # bench: watch this image alone\n`, 'bench: watch one image');
    await b.treecast('publish before watch', ['publish', image]);
    const w = await watchEditToServed(b, overlayFile, image);
    commands.push(`treecast watch --no-remote-history & (treecast serve); echo '# ...' >> ${overlayFile}   # no commit: watch follows the working tree`);
    figures.push({ what: 'watch: one-line overlay edit saved -> new version in the served index.json (ostree output alone)', value: `${w.seconds.toFixed(1)} s (${w.from} -> ${w.to})`, target: '<= 10 s', verdict: verdict(w.seconds <= 10) });
  } catch (err) {
    error = err;
    log(`stopped: ${err instanceof Error ? err.message : String(err)}`);
    await serveRunning?.();
  }

  // 5. Peak RSS of treecast's own process, over every invocation.
  if (b.runs.length) {
    const top = b.runs.reduce((x, y) => (y.peakRssKiB > x.peakRssKiB ? y : x));
    figures.push({ what: 'treecast peak RSS (own process, VmHWM)', value: `${(top.peakRssKiB / 1024).toFixed(0)} MiB (${top.label})`, target: '< 300 MB', verdict: verdict(top.peakRssKiB * 1024 < 300e6) });
  }

  const partial = error !== undefined;
  const report = renderReport({ a, started, machine, figures, notes, commands, raw, runs: b.runs, error, image });
  process.stdout.write('\n' + figures.map((f) => `${f.verdict.padEnd(4)}  ${f.what}: ${f.value}  (target ${f.target})`).join('\n') + '\n');
  if (a.out) {
    fs.writeFileSync(a.out, report);
    log(`wrote ${a.out}${partial ? ' (partial)' : ''}`);
  }
  if (a.keep) log(`kept ${b.tmp} (treecast's log: ${b.logFile})`);
  else fs.rmSync(b.tmp, { recursive: true, force: true });
  return partial ? 1 : 0;
}

function renderReport(r: {
  a: Args; started: Date; image: string; error: unknown;
  machine: { cpus: number; cpuModel: string; ramGiB: string; kernel: string; load: string; node: string; tools: string[]; commit: string };
  figures: Figure[]; notes: string[]; commands: string[]; raw: Record<string, number>; runs: Run[];
}): string {
  const m = r.machine;
  const lines = [
    '# Benchmarks',
    '',
    `Written by \`npx tsx bench/ratios.ts${r.a.image !== 'edge-host' ? ` --image ${r.a.image}` : ''} --out BENCHMARKS.md\` (issue #13).` + (r.error !== undefined ? ' **Partial: the run stopped before the end (see below).**' : ''),
    '',
    '## Machine',
    '',
    `- date: ${r.started.toISOString()}; treecast commit ${m.commit}`,
    `- ${m.cpus} CPUs (${m.cpuModel}), ${m.ramGiB} GiB RAM, ${m.kernel}, node ${m.node}`,
    `- load average at start (1, 5, 15 min): ${m.load}`,
    `- ${m.tools.join('; ')}`,
    '',
    '## Figures',
    '',
    '| figure | measured | target | |',
    '|---|---|---|---|',
    ...r.figures.map((f) => `| ${f.what} | ${f.value} | ${f.target} | ${f.verdict} |`),
    '',
  ];
  if (Object.keys(r.raw).length) {
    lines.push('Plain script (bench/raw-build.sh), by phase:', '');
    lines.push(`| ${Object.keys(r.raw).join(' | ')} |`, `|${Object.keys(r.raw).map(() => '---').join('|')}|`);
    lines.push(`| ${Object.entries(r.raw).map(([k, v]) => (k.startsWith('size-') ? `${(v / MiB).toFixed(1)} MiB` : `${v.toFixed(1)} s`)).join(' | ')} |`, '');
  }
  lines.push('Every treecast command (wall clock from spawn to exit; peak RSS of the node process):', '', '| run | command | seconds | peak RSS |', '|---|---|---|---|');
  for (const x of r.runs) lines.push(`| ${x.label} | \`${x.argv.join(' ')}\` | ${Number.isNaN(x.seconds) ? '-' : x.seconds.toFixed(1)} | ${(x.peakRssKiB / 1024).toFixed(0)} MiB |`);
  const stepLogs = r.runs.filter((x) => /build/.test(x.argv.join(' ')) && x.stderr.includes('building'));
  if (stepLogs.length) {
    lines.push('', 'Steps, as the builds printed them:', '');
    for (const x of stepLogs) {
      const steps = x.stderr.split('\n').filter((l) => /^\S+: building|^  \S/.test(l));
      lines.push(`${x.label} (${x.seconds.toFixed(1)} s):`, '', '```', ...steps, '```', '');
    }
  }
  lines.push('', '## Commands', '', 'In a scratch `git clone` of the repository (node_modules symlinked), with its own TREECAST_CACHE_DIR and TREECAST_PUBLISH_DIR:', '', '```sh', ...r.commands, '```', '');
  lines.push('## What distorts the numbers', '');
  lines.push(
    '- Downloads: treecast and the plain script take .debs from the same per-user cache (~/.cache/treecast/apt-archives); when it is warm neither pays for downloads, so the cold figures are an install from local .debs, not a first run on a fresh machine.',
    '- Page cache: the plain script runs first and warms the page cache for the .debs treecast then reads.',
    ...(r.image === 'tiny' ? ['- --image tiny is a smoke run of the harness: a few-KiB image whose times are mostly node start-up, so its ratios say nothing about Debian images and no raw script runs.'] : []),
    '- In the clone, edge-host gets a squashfs output (so it does what the plain script does); later the outputs become ostree alone for the ostree-alone figure, and the no-op build covers every example with that manifest.',
    '- Peak RSS is VmHWM of the treecast node process polled every 200 ms; mmdebstrap, dracut, ostree, mksquashfs, tar and zstd are children and not counted.',
    '- The pulled bytes are the sum of response sizes in treecast serve\'s access log for the client\'s `ostree pull` of v2 (the client holds v1): HTTP headers are not counted.',
    ...r.notes.map((n) => `- ${n}`),
  );
  if (r.error !== undefined) lines.push('', '## Stopped', '', '```', (r.error instanceof Error ? r.error.message : String(r.error)).slice(0, 4000), '```');
  return lines.join('\n') + '\n';
}

process.exitCode = await main();
