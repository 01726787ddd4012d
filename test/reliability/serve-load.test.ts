/**
 * `treecast serve` under load and abuse (issue #12): 200 real `ostree pull`
 * processes of a published ref at once, while ~50 slow clients hold
 * connections open (slowloris header dribblers, stalled and trickling
 * readers of a large file) and other clients send overlong URLs and headers.
 * Every pull must complete and verify, a probe of /index.json must keep
 * answering quickly, and the server's resident memory must stay bounded.
 *
 * The server is the real CLI in its own process (test/helpers/serve.ts), so
 * its memory can be read from /proc and the clients cannot starve it of the
 * test process's event loop. Budget: ~90 s on 2 cores.
 */
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SERVER_LIMITS } from '../../compiler/serve/server.js';
import { HOST, HOST_REF, NETBOOT, PublishFixture, fsck, must } from '../helpers/publish-fixture.js';
import { accessLines, startServe, stopServe, type ServeProcess } from '../helpers/serve.js';
import { pool } from '../hostile/hostile-fixture.js';

const PULLS = 200;
const FSCK_SAMPLE = 20;
const SLOWLORIS = 20;
const STALLED_READERS = 15;
const TRICKLE_READERS = 15;
/** Sparse, so it costs no disk, but large enough that no kernel or Node buffer can hold it. */
const BIG_SIZE = 256 * 1024 * 1024;
const RSS_LIMIT_MB = 300;
/**
 * "Within a few seconds", with room for a 2-core host shared with other test
 * runs: at a load average of ~200 the probe's median was 0.3 s, its worst
 * 10 s, and the overlong requests were answered in 3-6 s (0.1-0.5 s at ~20).
 */
const PROBE_MEDIAN_LIMIT_MS = 2_000;
const PROBE_MAX_LIMIT_MS = 30_000;
const OVERLONG_LIMIT_MS = 15_000;

let f: PublishFixture;
let pub: string;
let serve: ServeProcess;
let commit: string;
let clientsDir: string;

beforeAll(async () => {
  const started = performance.now();
  f = await PublishFixture.create('serve-load', { keep: 2 });
  // Only the ostree commit is pulled: the netboot image and the host's
  // squashfs/tarball would double the build time for nothing served here.
  const hostYaml = path.join(f.spec, 'images', `${HOST}.yaml`);
  fs.writeFileSync(hostYaml, fs.readFileSync(hostYaml, 'utf8').replace(/^ {2}(squashfs|tarball): \{\}\n/gm, ''));
  fs.rmSync(path.join(f.spec, 'images', `${NETBOOT}.yaml`));
  await f.commit('serve-load: the host image as an ostree commit only');
  pub = f.dir('pub');
  const built = await f.build();
  commit = built.host!.commit;
  await f.mustPublish(pub);
  // An artifact-sized file next to the published tree: a server that
  // buffered whole files instead of streaming with backpressure would need
  // STALLED_READERS x 256 MB for it.
  fs.writeFileSync(path.join(pub, 'big.bin'), '');
  fs.truncateSync(path.join(pub, 'big.bin'), BIG_SIZE);
  serve = await startServe(pub, path.join(f.root, 'access.log'));
  clientsDir = path.join(f.root, 'clients');
  console.log(`serve-load: fixture built, published and served in ${((performance.now() - started) / 1000).toFixed(1)} s`);
});

afterAll(async () => {
  await stopServe(serve);
  // rm(1) is far quicker than fs.rmSync for 200 repos of small files.
  if (clientsDir) await must('rm', ['-rf', clientsDir]);
  await f?.cleanup();
});

// ---------------------------------------------------------------------------
// Measurements
// ---------------------------------------------------------------------------

/** VmRSS/VmHWM of a process in MiB, from /proc (the kernel's own peak, not a sample). */
function memoryOf(pid: number): { rss: number; hwm: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024 };
}

function sampleMemory(pid: number, everyMs: number): { stop(): { peakRss: number; hwm: number; samples: number } } {
  let peakRss = 0;
  let samples = 0;
  let lost: unknown;
  const take = () => {
    try {
      peakRss = Math.max(peakRss, memoryOf(pid).rss);
      samples++;
    } catch (err) {
      lost ??= err; // the server died: reported by stop()
    }
  };
  take();
  const timer = setInterval(take, everyMs);
  return {
    stop() {
      clearInterval(timer);
      take();
      if (lost) throw new Error(`treecast serve (pid ${pid}) vanished during the run: ${String(lost)}`);
      return { peakRss, hwm: memoryOf(pid).hwm, samples };
    },
  };
}

/** GETs /index.json every `everyMs` on a fresh connection; records each latency and status. */
function probeLoop(url: string, everyMs: number): { stop(): Promise<{ latencies: number[]; failures: string[] }> } {
  const latencies: number[] = [];
  const failures: string[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const started = performance.now();
      try {
        const { status, body } = await get(`${url}/index.json`, 15_000);
        if (status !== 200 || !body.includes('"images"')) failures.push(`status ${status}`);
      } catch (err) {
        failures.push(String(err));
      }
      latencies.push(performance.now() - started);
      await sleep(everyMs);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return { latencies, failures };
    },
  };
}

function get(url: string, timeoutMs: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------
// Abusive clients (raw sockets: node:http would refuse to send most of this)
// ---------------------------------------------------------------------------

interface SlowClient {
  kind: 'slowloris' | 'stalled' | 'trickle';
  socket: net.Socket;
  /** Set when the server (not the test) ended the connection. */
  closedAfterMs?: number;
  /** First response line the server sent, if any. */
  statusLine?: string;
  bytesRead: number;
  stop(): void;
}

function connect(url: string): Promise<net.Socket> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const s = net.connect(Number(port), hostname, () => resolve(s));
    s.once('error', reject);
  });
}

/** Opens the connection and records how and when the server ends it. */
async function slowClient(url: string, kind: SlowClient['kind']): Promise<SlowClient> {
  const socket = await connect(url);
  const started = performance.now();
  let head = '';
  const c: SlowClient = { kind, socket, bytesRead: 0, stop: () => socket.destroy() };
  let stoppedByTest = false;
  socket.on('data', (d: Buffer) => {
    c.bytesRead += d.length;
    if (c.statusLine === undefined && head.length < 200) {
      head += d.subarray(0, 200).toString('latin1');
      if (head.includes('\r\n')) c.statusLine = head.split('\r\n')[0];
    }
  });
  socket.on('error', () => {});
  socket.on('close', () => {
    if (!stoppedByTest) c.closedAfterMs = performance.now() - started;
  });
  const timers: NodeJS.Timeout[] = [];
  c.stop = () => {
    stoppedByTest = true;
    timers.forEach(clearInterval);
    socket.destroy();
  };

  if (kind === 'slowloris') {
    // A request whose headers never end: one byte a second.
    const request = Buffer.from(`GET /index.json HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slowloris${'x'.repeat(200)}`);
    let i = 0;
    timers.push(
      setInterval(() => {
        if (i < request.length && !socket.destroyed) socket.write(request.subarray(i, ++i));
      }, 1_000),
    );
  } else {
    socket.write('GET /big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    // After the first chunk (the status line), a paused socket stops reading:
    // the kernel buffers fill and the server's writes must stall instead of
    // queueing the file in memory.
    socket.once('data', () => socket.pause());
    if (kind === 'trickle') {
      // One chunk a second: a client on a very slow link.
      timers.push(
        setInterval(() => {
          socket.once('data', () => socket.pause());
          socket.resume();
        }, 1_000),
      );
    }
  }
  return c;
}

interface OverlongResult {
  what: string;
  statusLine?: string;
  ms: number;
}

/** Sends one oversized request and waits for the answer or the close. */
async function overlong(url: string, what: string, request: string): Promise<OverlongResult> {
  const socket = await connect(url);
  const started = performance.now();
  return new Promise((resolve) => {
    let head = '';
    const done = () => {
      socket.destroy();
      resolve({ what, statusLine: head.includes('\r\n') ? head.split('\r\n')[0] : undefined, ms: performance.now() - started });
    };
    socket.on('data', (d: Buffer) => {
      head += d.toString('latin1');
      if (head.includes('\r\n')) done();
    });
    socket.on('error', done);
    socket.on('close', done);
    // The server may answer and close before all of it is written: EPIPE is an answer too.
    socket.write(request, () => {});
  });
}

function overlongRequests(): [string, string][] {
  const big = 'a'.repeat(100 * 1024);
  const manyHeaders = Array.from({ length: 10_000 }, (_, i) => `X-H${i}: v\r\n`).join('');
  return [
    ['100 KB URL', `GET /${big} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`],
    ['100 KB header', `GET /index.json HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${big}\r\n\r\n`],
    ['10000 headers', `GET /index.json HTTP/1.1\r\nHost: 127.0.0.1\r\n${manyHeaders}\r\n`],
  ];
}

// ---------------------------------------------------------------------------
// ostree clients
// ---------------------------------------------------------------------------

/**
 * One `ostree init --mode=bare-user` + `remote add`, copied per client: a
 * copy of a freshly initialised repo is byte for byte a fresh repo, and 400
 * process starts would cost more than the pulls themselves on 2 cores.
 */
async function prepareClients(root: string, url: string, count: number): Promise<string[]> {
  const template = path.join(root, 'template');
  fs.mkdirSync(template, { recursive: true });
  await must('ostree', ['init', `--repo=${template}`, '--mode=bare-user']);
  // The fixture publishes unsigned: nothing to verify signatures against.
  await must('ostree', [`--repo=${template}`, 'remote', 'add', '--no-gpg-verify', 'origin', `${url}/repo`, HOST_REF]);
  // The server is under test, not the disk: 200 clients fsyncing every object
  // would measure the VM's disk queue (and slow every other test on the host).
  await must('ostree', [`--repo=${template}`, 'config', 'set', 'core.fsync', 'false']);
  return Array.from({ length: count }, (_, i) => {
    const dir = path.join(root, String(i));
    fs.cpSync(template, dir, { recursive: true });
    return dir;
  });
}

interface PullResult {
  dir: string;
  exit: string;
  rev: string;
  log: string;
}

/**
 * Starts every pull at once from one shell, each followed by its rev-parse.
 * Forking 200 children from the test's large Node process took ~100 ms each
 * on a loaded 2-core host, so the "fleet" trickled in over 20 s; dash forks
 * them in a moment. The clients run at nice 19: on a real network they are
 * other machines, here 200 of them share the server's two cores (and its
 * scheduler autogroup), and even at nice 10 their summed weight starved the
 * server to ~6% of a core, so the probe measured the scheduler, not the server.
 */
async function pullFleet(root: string, dirs: string[]): Promise<PullResult[]> {
  const list = path.join(root, 'clients.txt');
  fs.writeFileSync(list, dirs.join('\n') + '\n');
  // Each pull has its own time limit, so none outlives the shell if it is
  // killed. Only a guard against hangs: at a load average of ~200, pulls that
  // had their 522 KiB after 90 s were still not done at 200 s (nice 19, starved).
  const script = [
    'while read -r d; do',
    '  ( timeout 400 nice -n 19 ostree --repo="$d" pull origin "$0" >"$d.log" 2>&1; echo $? >"$d.exit"',
    '    ostree --repo="$d" rev-parse "origin:$0" >"$d.rev" 2>>"$d.log" ) &',
    'done <"$1"',
    'wait',
  ].join('\n');
  await must('sh', ['-c', script, HOST_REF, list], { timeoutMs: 450_000 });
  const read = (file: string) => (fs.existsSync(file) ? fs.readFileSync(file, 'utf8').trim() : '(missing)');
  return dirs.map((dir) => ({ dir, exit: read(`${dir}.exit`), rev: read(`${dir}.rev`), log: read(`${dir}.log`) }));
}

/** utime + stime of a process in seconds (/proc/PID/stat fields 14 and 15). */
function cpuSecondsOf(pid: number): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** The host's count of SYNs dropped because a listen queue was full (all sockets, so informative only). */
function listenOverflows(): number {
  const lines = fs.readFileSync('/proc/net/netstat', 'utf8').split('\n').filter((l) => l.startsWith('TcpExt:'));
  const names = lines[0]!.split(/\s+/);
  const values = lines[1]!.split(/\s+/);
  return Number(values[names.indexOf('ListenOverflows')]);
}

async function until(done: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!done() && performance.now() < deadline) await sleep(200);
}

// ---------------------------------------------------------------------------

describe('treecast serve under load and abuse', () => {
  it(`${PULLS} concurrent ostree pulls all complete and verify while slow and overlong clients hammer the server`, async () => {
    const pid = serve.child.pid!;
    const setupStarted = performance.now();
    const clients = await prepareClients(clientsDir, serve.url, PULLS);
    const setupMs = performance.now() - setupStarted;

    const memory = sampleMemory(pid, 100);
    const probe = probeLoop(serve.url, 250);
    const slow = await Promise.all([
      ...Array.from({ length: SLOWLORIS }, () => slowClient(serve.url, 'slowloris')),
      ...Array.from({ length: STALLED_READERS }, () => slowClient(serve.url, 'stalled')),
      ...Array.from({ length: TRICKLE_READERS }, () => slowClient(serve.url, 'trickle')),
    ]);
    const slowloris = slow.filter((c) => c.kind === 'slowloris');
    const readers = slow.filter((c) => c.kind !== 'slowloris');
    // Let the readers fill every buffer between them and the file.
    await sleep(1_000);

    const pullsStarted = performance.now();
    const cpuBefore = cpuSecondsOf(pid);
    const overflowsBefore = listenOverflows();
    const fleet = pullFleet(clientsDir, clients);
    // Oversized requests while the pulls run, a few rounds of each.
    const overlongs: Promise<OverlongResult>[] = [];
    for (let round = 0; round < 3; round++) {
      await sleep(1_000);
      for (const [what, request] of overlongRequests()) overlongs.push(overlong(serve.url, what, request));
    }
    const pulls = await fleet;
    const pullsMs = performance.now() - pullsStarted;
    const serverCpu = cpuSecondsOf(pid) - cpuBefore;
    const overflows = listenOverflows() - overflowsBefore;
    const overlongResults = await Promise.all(overlongs);
    const readersHeld = readers.filter((c) => c.closedAfterMs === undefined).length;

    // The server, not the test, must end the slowloris connections (headersTimeout).
    await until(() => slowloris.every((c) => c.closedAfterMs !== undefined), 60_000);
    const { latencies, failures } = await probe.stop();
    const mem = memory.stop();
    const readerBytes = readers.reduce((sum, c) => sum + c.bytesRead, 0);
    slow.forEach((c) => c.stop());

    const sample = clients.filter((_, i) => i % (PULLS / FSCK_SAMPLE) === 0);
    // At most 4 at a time: verification, not load.
    const fscks = await pool(sample, 4, (dir) => fsck(dir));

    const access = accessLines(serve);
    const statuses = new Map<string, number>();
    for (const l of access) {
      const status = /" (\d{3}) /.exec(l)?.[1] ?? '?';
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
    }
    const ok = pulls.filter((p) => p.exit === '0' && p.rev === commit);
    const maxProbe = Math.max(...latencies);
    const slowlorisHeld = slowloris.map((c) => (c.closedAfterMs ?? NaN) / 1000);
    console.log(
      [
        `serve-load: ${ok.length}/${PULLS} pulls ok and at ${commit.slice(0, 12)} in ${(pullsMs / 1000).toFixed(1)} s (client setup ${(setupMs / 1000).toFixed(1)} s), fsck ok on ${fscks.filter((r) => r.ok).length}/${sample.length}`,
        `  server: ${access.length} requests logged (${[...statuses].map(([k, v]) => `${k}: ${v}`).join(', ')}), ${serverCpu.toFixed(1)} CPU s during the pulls, host listen-queue overflows ${overflows}`,
        `  slow readers held through the pulls: ${readersHeld}/${readers.length} (stalled ${STALLED_READERS}, trickle ${TRICKLE_READERS}), ${(readerBytes / 1024 / 1024).toFixed(1)} MiB of big.bin read`,
        `  slowloris: ${slowloris.length} held ${Math.min(...slowlorisHeld).toFixed(1)}-${Math.max(...slowlorisHeld).toFixed(1)} s, then ${[...new Set(slowloris.map((c) => c.statusLine ?? 'closed'))].join(' / ')}`,
        `  server memory: peak VmRSS ${mem.peakRss.toFixed(1)} MiB over ${mem.samples} samples, VmHWM ${mem.hwm.toFixed(1)} MiB (limit ${RSS_LIMIT_MB})`,
        `  probe GET /index.json: ${latencies.length} requests, median ${median(latencies).toFixed(0)} ms, p95 ${percentile(latencies, 0.95).toFixed(0)} ms, max ${maxProbe.toFixed(0)} ms, failures ${failures.length}`,
        `  overlong: ${overlongResults.map((o) => `${o.what} -> ${o.statusLine ?? 'closed'} in ${o.ms.toFixed(0)} ms`).join('; ')}`,
      ].join('\n'),
    );

    expect(pulls.filter((p) => p.exit !== '0').map((p) => `${p.dir}: exit ${p.exit}\n${p.log.slice(-500)}`)).toEqual([]);
    expect(pulls.filter((p) => p.rev !== commit).map((p) => `${p.dir}: ${p.rev}`)).toEqual([]);
    expect(fscks.filter((r) => !r.ok).map((r) => r.output)).toEqual([]);

    expect(failures).toEqual([]);
    expect(median(latencies)).toBeLessThan(PROBE_MEDIAN_LIMIT_MS);
    expect(maxProbe).toBeLessThan(PROBE_MAX_LIMIT_MS);
    expect(mem.hwm).toBeLessThan(RSS_LIMIT_MB);

    for (const o of overlongResults) {
      // An error status, or a plain close: never a 200, never a hang.
      if (o.statusLine !== undefined) expect(o.statusLine, o.what).toMatch(/^HTTP\/1\.1 (400|414|431) /);
      expect(o.ms, o.what).toBeLessThan(OVERLONG_LIMIT_MS);
    }
    // Slow readers are served, slowly, never cut off.
    expect(readersHeld).toBe(readers.length);
    for (const c of readers) expect(c.statusLine, c.kind).toBe('HTTP/1.1 200 OK');
    // Header dribblers are held until headersTimeout, then answered 408 (or cut).
    for (const c of slowloris) {
      expect(c.closedAfterMs, 'slowloris closed by the server').toBeDefined();
      expect(c.closedAfterMs!).toBeGreaterThanOrEqual(SERVER_LIMITS.headersTimeout! - 1_000);
      if (c.statusLine !== undefined) expect(c.statusLine).toMatch(/^HTTP\/1\.1 408 /);
    }
  }, 600_000);
});

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * p))] ?? NaN;
}

const median = (xs: number[]) => percentile(xs, 0.5);
