/**
 * End-to-end tests for compiler/serve: every case issues real HTTP requests
 * against a server bound on 127.0.0.1 and serving a temp publish tree.
 *
 * node:http (not fetch) is used on purpose: fetch normalises URLs, so
 * "/%2e%2e/" would never reach the server and the traversal tests would
 * prove nothing. A raw TCP helper covers request targets even node:http
 * refuses to send.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { startServer, type RunningServer } from '../compiler/serve/index.js';

// ---------------------------------------------------------------------------
// Fixture: a miniature publish directory plus a secret just outside it.
// ---------------------------------------------------------------------------

const SECRET = 'TOP-SECRET-OUTSIDE-PUBLISH-DIR';
const RANGE_DATA = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 251));
const BIG_SIZE = 64 * 1024 * 1024;

let base: string;
let pub: string;
let server: RunningServer;
const logs: string[] = [];

function put(rel: string, content: string | Buffer = rel): void {
  const file = path.join(pub, rel);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, content);
}

function buildFixture(): void {
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'treecast-serve-'));
  pub = path.join(base, 'pub');
  fs.mkdirSync(pub);
  fs.writeFileSync(path.join(base, 'secret.txt'), SECRET);

  put('index.html', '<!doctype html><h1>treecast index</h1>');
  put('index.json', '{"images":[]}');
  put('range.bin', RANGE_DATA);
  put('empty.bin', '');
  put('big.bin', '');
  fs.truncateSync(path.join(pub, 'big.bin'), BIG_SIZE); // sparse: cheap to create

  // OSTree archive repo.
  for (const f of [
    'repo/config',
    'repo/summary',
    'repo/summary.sig',
    'repo/refs/heads/treecast/base/x86_64',
    'repo/objects/ab/cdef0123.filez',
    'repo/objects/ab/cdef0123.dirtree',
    'repo/objects/ab/cdef0123.dirmeta',
    'repo/objects/ab/cdef0123.commit',
    'repo/objects/ab/cdef0123.commitmeta',
    'repo/deltas/ab/cdef-0123/superblock',
    'repo/deltas/ab/cdef-0123/0',
  ]) {
    put(f);
  }

  // Artifacts, with images/<name>/latest as a relative symlink.
  for (const f of [
    'images/base/1.0/base.squashfs',
    'images/base/1.0/disk.img',
    'images/base/1.0/rootfs.tar.zst',
    'images/base/1.0/rootfs.tgz',
    'images/base/1.0/rootfs.tar.gz',
    'images/base/1.0/rootfs.tar.xz',
    'images/base/1.0/rootfs.tar',
    'images/base/1.0/base.squashfs.asc',
    'images/base/1.0/base.squashfs.sig',
    'images/base/1.0/notes.txt',
  ]) {
    put(f);
  }
  fs.symlinkSync('1.0', path.join(pub, 'images/base/latest'));
  put('boot/base.ipxe', '#!ipxe\nchain http://x/\n');
  put('kickstart/base.ks', 'text\n');
  put('assets/style.css', 'body{}');
  put('assets/app.js', 'void 0');
  put('assets/logo.png', Buffer.from([0x89, 0x50, 0x4e, 0x47]));
  put('assets/logo.svg', '<svg/>');

  // Publish's private state: must never be served.
  put('.lock', 'pid 1');
  put('.staging-123/secret.txt', 'staging');
  put('images/.hidden', 'hidden');

  // Directory listing material (no index.html here).
  put('files/a <b>&"c".txt', 'weird name');
  put('files/sub/x.txt', 'x');
  put('files/.dot', 'dot');
  fs.symlinkSync('/etc/passwd', path.join(pub, 'files/escape'));
  fs.symlinkSync('../..', path.join(pub, 'files/escape-dir'));
  fs.symlinkSync('sub', path.join(pub, 'files/sub-link'));

  // Hostile symlinks at the top level.
  fs.symlinkSync('/etc/passwd', path.join(pub, 'evil-passwd'));
  fs.symlinkSync('../secret.txt', path.join(pub, 'evil-secret'));
  fs.symlinkSync('..', path.join(pub, 'evil-dir'));
  fs.symlinkSync('.staging-123', path.join(pub, 'staging-link'));
  fs.symlinkSync('does-not-exist', path.join(pub, 'dangling'));
}

beforeAll(async () => {
  buildFixture();
  server = await startServer({ dir: pub, port: 0, log: (line) => logs.push(line) });
});

afterAll(async () => {
  await server?.close();
  fs.rmSync(base, { recursive: true, force: true });
});

afterEach(() => {
  vi.restoreAllMocks();
});

// ---------------------------------------------------------------------------
// HTTP helpers
// ---------------------------------------------------------------------------

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

function request(
  urlPath: string,
  opts: { method?: string; headers?: http.OutgoingHttpHeaders; port?: number; agent?: http.Agent } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port: opts.port ?? server.port,
        path: urlPath,
        method: opts.method ?? 'GET',
        headers: opts.headers,
        agent: opts.agent ?? false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** Sends a request target verbatim over TCP; returns status and raw response. */
function rawRequest(target: string): Promise<{ status: number; raw: string }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(server.port, '127.0.0.1');
    const chunks: Buffer[] = [];
    sock.on('connect', () => {
      sock.write(`GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
    });
    sock.on('data', (c) => chunks.push(c));
    sock.on('error', reject);
    sock.on('close', () => {
      const raw = Buffer.concat(chunks).toString('latin1');
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1] ?? 0), raw });
    });
  });
}

async function waitFor<T>(probe: () => T | undefined, timeoutMs = 3000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error('waitFor: timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

const logLineFor = (pattern: RegExp) => waitFor(() => logs.find((l) => pattern.test(l)));

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

describe('startServer', () => {
  it('binds 127.0.0.1 on an ephemeral port and reports url/port', () => {
    expect(server.port).toBeGreaterThan(0);
    expect(server.url).toBe(`http://127.0.0.1:${server.port}`);
  });

  it('rejects a missing directory or a file as dir', async () => {
    await expect(startServer({ dir: path.join(base, 'nope'), port: 0 })).rejects.toThrow();
    await expect(startServer({ dir: path.join(base, 'secret.txt'), port: 0 })).rejects.toThrow(/not a directory/);
  });

  it('rejects when the port is already taken', async () => {
    await expect(startServer({ dir: pub, port: server.port, log: () => {} })).rejects.toMatchObject({
      code: 'EADDRINUSE',
    });
  });

  it('close() drops idle keep-alive connections instead of hanging', async () => {
    const s = await startServer({ dir: pub, port: 0, log: () => {} });
    const agent = new http.Agent({ keepAlive: true });
    const r = await request('/index.json', { port: s.port, agent });
    expect(r.status).toBe(200);
    expect(r.headers.connection).toBe('keep-alive');
    const t0 = Date.now();
    await s.close();
    expect(Date.now() - t0).toBeLessThan(1000);
    await expect(request('/index.json', { port: s.port })).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    await s.close(); // idempotent
    agent.destroy();
  });

  it('logs to stderr by default', async () => {
    const s = await startServer({ dir: pub, port: 0 });
    const lines: string[] = [];
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      lines.push(String(chunk));
      return true;
    });
    await request('/index.json?default-log', { port: s.port });
    await waitFor(() => lines.find((l) => l.includes('"GET /index.json?default-log" 200')));
    spy.mockRestore();
    await s.close();
  });
});

describe('methods', () => {
  it('GET returns the file with Content-Length, ETag, Last-Modified, Accept-Ranges', async () => {
    const r = await request('/index.json');
    expect(r.status).toBe(200);
    expect(r.body.toString()).toBe('{"images":[]}');
    expect(r.headers['content-length']).toBe(String(r.body.length));
    expect(r.headers['accept-ranges']).toBe('bytes');
    expect(r.headers.etag).toMatch(/^"[^"]+"$/); // strong: no W/ prefix
    expect(new Date(r.headers['last-modified'] ?? '').getTime()).not.toBeNaN();
    expect(r.headers['x-content-type-options']).toBe('nosniff');
  });

  it('HEAD returns the same headers and no body', async () => {
    const get = await request('/range.bin');
    const head = await request('/range.bin', { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.body.length).toBe(0);
    expect(head.headers['content-length']).toBe('1000');
    expect(head.headers.etag).toBe(get.headers.etag);
    expect(head.headers['content-type']).toBe(get.headers['content-type']);
  });

  it.each(['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'])('%s -> 405 with Allow', async (method) => {
    for (const p of ['/index.json', '/no-such-file']) {
      const r = await request(p, { method });
      expect(r.status).toBe(405);
      expect(r.headers.allow).toBe('GET, HEAD');
      expect(r.headers['content-length']).toBe(String(r.body.length));
    }
  });
});

describe('range requests', () => {
  const range = (spec: string, headers: http.OutgoingHttpHeaders = {}) =>
    request('/range.bin', { headers: { Range: spec, ...headers } });

  it.each([
    ['bytes=0-9', 0, 9],
    ['bytes=100-199', 100, 199],
    ['bytes=990-', 990, 999],
    ['bytes=-10', 990, 999],
    ['bytes=995-5000', 995, 999], // end clamped to size-1
    ['bytes=-5000', 0, 999], // suffix longer than file = whole file
    ['bytes=999-999', 999, 999],
    ['BYTES = 5-6', 5, 6], // unit is case-insensitive
  ])('%s -> 206 exact bytes', async (spec, start, end) => {
    const r = await range(spec);
    expect(r.status).toBe(206);
    expect(r.headers['content-range']).toBe(`bytes ${start}-${end}/1000`);
    expect(r.headers['content-length']).toBe(String(end - start + 1));
    expect(r.body.equals(RANGE_DATA.subarray(start, end + 1))).toBe(true);
  });

  it.each(['bytes=1000-', 'bytes=5000-6000', 'bytes=-0'])('%s -> 416 with bytes */size', async (spec) => {
    const r = await range(spec);
    expect(r.status).toBe(416);
    expect(r.headers['content-range']).toBe('bytes */1000');
    expect(r.headers['content-length']).toBe(String(r.body.length));
  });

  it('416 for any int-range on an empty file, 200 otherwise', async () => {
    const r = await request('/empty.bin', { headers: { Range: 'bytes=0-' } });
    expect(r.status).toBe(416);
    expect(r.headers['content-range']).toBe('bytes */0');
    const full = await request('/empty.bin');
    expect(full.status).toBe(200);
    expect(full.headers['content-length']).toBe('0');
  });

  it.each(['bytes=0-1,5-6', 'bytes=-1,0-0', 'items=0-5', 'bytes=abc', 'bytes=9-3', 'bytes=-', 'bytes='])(
    'multi-range / unknown unit / invalid %s -> 200 full body',
    async (spec) => {
      const r = await range(spec);
      expect(r.status).toBe(200);
      expect(r.headers['content-range']).toBeUndefined();
      expect(r.body.equals(RANGE_DATA)).toBe(true);
    },
  );

  it('HEAD ignores Range (only GET has range semantics)', async () => {
    const r = await request('/range.bin', { method: 'HEAD', headers: { Range: 'bytes=0-9' } });
    expect(r.status).toBe(200);
    expect(r.headers['content-length']).toBe('1000');
  });

  it('If-Range with the current ETag or Last-Modified applies the range', async () => {
    const { headers } = await request('/range.bin', { method: 'HEAD' });
    const byTag = await range('bytes=0-3', { 'If-Range': headers.etag });
    expect(byTag.status).toBe(206);
    expect(byTag.body.equals(RANGE_DATA.subarray(0, 4))).toBe(true);
    const byDate = await range('bytes=0-3', { 'If-Range': headers['last-modified'] });
    expect(byDate.status).toBe(206);
  });

  it('If-Range with a stale/weak validator sends the whole file', async () => {
    const { headers } = await request('/range.bin', { method: 'HEAD' });
    const lastMod = new Date(headers['last-modified'] ?? '').getTime();
    for (const ifRange of ['"stale"', `W/${headers.etag}`, new Date(lastMod - 3600_000).toUTCString()]) {
      const r = await range('bytes=0-3', { 'If-Range': ifRange });
      expect(r.status, ifRange).toBe(200);
      expect(r.body.equals(RANGE_DATA)).toBe(true);
    }
  });
});

describe('conditional requests', () => {
  it('If-None-Match matching (exact, in a list, weak form, *) -> 304 without body', async () => {
    const { headers } = await request('/index.json');
    const etag = headers.etag ?? '';
    for (const inm of [etag, `"other", ${etag}`, `W/${etag}`, '*']) {
      const r = await request('/index.json', { headers: { 'If-None-Match': inm } });
      expect(r.status, inm).toBe(304);
      expect(r.body.length).toBe(0);
      expect(r.headers.etag).toBe(etag);
      expect(r.headers['cache-control']).toBe('no-cache');
    }
    expect((await request('/index.json', { headers: { 'If-None-Match': '"nope"' } })).status).toBe(200);
  });

  it('If-Modified-Since -> 304 when not modified, 200 when older', async () => {
    const { headers } = await request('/index.json');
    const lastMod = headers['last-modified'] ?? '';
    expect((await request('/index.json', { headers: { 'If-Modified-Since': lastMod } })).status).toBe(304);
    const older = new Date(new Date(lastMod).getTime() - 3600_000).toUTCString();
    expect((await request('/index.json', { headers: { 'If-Modified-Since': older } })).status).toBe(200);
    expect((await request('/index.json', { headers: { 'If-Modified-Since': 'garbage' } })).status).toBe(200);
  });

  it('If-None-Match takes precedence over If-Modified-Since', async () => {
    const { headers } = await request('/index.json');
    const r = await request('/index.json', {
      headers: { 'If-None-Match': '"nope"', 'If-Modified-Since': headers['last-modified'] },
    });
    expect(r.status).toBe(200);
  });

  it('replacing a file (publish-style rename) changes the ETag', async () => {
    put('swap.json', '{"v":1}');
    const before = await request('/swap.json');
    fs.writeFileSync(path.join(pub, '.swap.tmp'), '{"v":2}');
    fs.renameSync(path.join(pub, '.swap.tmp'), path.join(pub, 'swap.json'));
    const after = await request('/swap.json', { headers: { 'If-None-Match': before.headers.etag } });
    expect(after.status).toBe(200);
    expect(after.body.toString()).toBe('{"v":2}');
    expect(after.headers.etag).not.toBe(before.headers.etag);
    // A resume against the old version must not splice old and new bytes.
    const resumed = await request('/swap.json', { headers: { Range: 'bytes=2-', 'If-Range': before.headers.etag } });
    expect(resumed.status).toBe(200);
  });
});

describe('content types', () => {
  const OCTET = 'application/octet-stream';
  const TEXT = 'text/plain; charset=utf-8';
  it.each([
    ['/index.json', 'application/json'],
    ['/index.html', 'text/html; charset=utf-8'],
    ['/images/base/1.0/notes.txt', TEXT],
    ['/kickstart/base.ks', TEXT],
    ['/boot/base.ipxe', TEXT],
    ['/images/base/1.0/base.squashfs', OCTET],
    ['/images/base/1.0/disk.img', OCTET],
    ['/images/base/1.0/rootfs.tar.zst', 'application/zstd'],
    ['/images/base/1.0/rootfs.tgz', 'application/gzip'],
    ['/images/base/1.0/rootfs.tar.gz', 'application/gzip'],
    ['/images/base/1.0/rootfs.tar.xz', 'application/x-xz'],
    ['/images/base/1.0/rootfs.tar', 'application/x-tar'],
    ['/images/base/1.0/base.squashfs.asc', 'application/pgp-signature'],
    ['/images/base/1.0/base.squashfs.sig', OCTET],
    ['/repo/objects/ab/cdef0123.filez', OCTET],
    ['/repo/objects/ab/cdef0123.dirtree', OCTET],
    ['/repo/objects/ab/cdef0123.dirmeta', OCTET],
    ['/repo/objects/ab/cdef0123.commit', OCTET],
    ['/repo/objects/ab/cdef0123.commitmeta', OCTET],
    ['/repo/summary', OCTET],
    ['/repo/summary.sig', OCTET],
    ['/repo/config', OCTET],
    ['/repo/deltas/ab/cdef-0123/superblock', OCTET],
    ['/repo/deltas/ab/cdef-0123/0', OCTET],
    ['/assets/style.css', 'text/css; charset=utf-8'],
    ['/assets/app.js', 'text/javascript; charset=utf-8'],
    ['/assets/logo.png', 'image/png'],
    ['/assets/logo.svg', 'image/svg+xml'],
  ])('%s -> %s', async (p, type) => {
    const r = await request(p);
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe(type);
    expect(r.headers['content-encoding']).toBeUndefined(); // .gz etc. are served as-is
    expect(r.headers['content-length']).toBe(String(r.body.length));
  });
});

describe('cache-control', () => {
  it.each([
    '/repo/summary',
    '/repo/summary.sig',
    '/repo/refs/heads/treecast/base/x86_64',
    '/repo/config',
    '/index.json',
    '/index.html',
    '/',
    '/boot/base.ipxe',
    '/kickstart/base.ks',
    '/images/base/latest/base.squashfs',
    '/files/',
  ])('%s is mutable -> no-cache', async (p) => {
    expect((await request(p)).headers['cache-control']).toBe('no-cache');
  });

  it.each([
    '/repo/objects/ab/cdef0123.filez',
    '/repo/objects/ab/cdef0123.commit',
    '/repo/deltas/ab/cdef-0123/superblock',
    '/repo/deltas/ab/cdef-0123/0',
  ])('%s is content-addressed -> immutable', async (p) => {
    expect((await request(p)).headers['cache-control']).toBe('public, max-age=31536000, immutable');
  });
});

describe('directories', () => {
  it('/ serves index.html', async () => {
    const r = await request('/');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(r.body.toString()).toContain('treecast index');
  });

  it('a directory without index.html gets an escaped listing without dotfiles', async () => {
    const r = await request('/files/');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(r.headers['content-length']).toBe(String(r.body.length));
    const html = r.body.toString();
    expect(html).toContain('a &#60;b&#62;&#38;&#34;c&#34;.txt');
    expect(html).not.toContain('<b>');
    expect(html).toContain('href="sub/"');
    expect(html).toContain('href="sub-link/"'); // in-tree symlink to a dir
    expect(html).toContain('href="../"');
    expect(html).not.toContain('.dot');
    expect(html).not.toMatch(/escape/); // escaping symlinks are not advertised
  });

  it('listing links resolve to the files', async () => {
    const html = (await request('/files/')).body.toString();
    const href = /href="(a[^"]*)"/.exec(html)?.[1] ?? '';
    const decodedHref = href.replace(/&#(\d+);/g, (_, n: string) => String.fromCharCode(Number(n)));
    const r = await request('/files/' + decodedHref);
    expect(r.status).toBe(200);
    expect(r.body.toString()).toBe('weird name');
  });

  it('root listing is generated when index.html is absent', async () => {
    const dir = fs.mkdtempSync(path.join(base, 'noindex-'));
    fs.writeFileSync(path.join(dir, 'one.txt'), '1');
    const s = await startServer({ dir, port: 0, log: () => {} });
    try {
      const html = (await request('/', { port: s.port })).body.toString();
      expect(html).toContain('href="one.txt"');
      expect(html).not.toContain('href="../"');
    } finally {
      await s.close();
    }
  });

  it('HEAD on a listing has Content-Length and no body', async () => {
    const get = await request('/files/');
    const head = await request('/files/', { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.body.length).toBe(0);
    expect(head.headers['content-length']).toBe(String(get.body.length));
  });

  it.each([
    ['/files', '/files/'],
    ['/files?x=1', '/files/?x=1'],
    ['/images/base/latest', '/images/base/latest/'],
    ['//files', '/files/'], // never a protocol-relative Location
  ])('%s -> 301 %s', async (p, location) => {
    const r = await request(p);
    expect(r.status).toBe(301);
    expect(r.headers.location).toBe(location);
    expect(r.headers['content-length']).toBe(String(r.body.length));
  });

  it('missing files and files with a trailing slash -> 404', async () => {
    expect((await request('/nope.txt')).status).toBe(404);
    expect((await request('/index.json/')).status).toBe(404);
    expect((await request('/index.json/x')).status).toBe(404);
  });
});

describe('symlinks', () => {
  it('images/<name>/latest (relative symlink inside the tree) works', async () => {
    const file = await request('/images/base/latest/base.squashfs');
    expect(file.status).toBe(200);
    expect(file.body.toString()).toBe('images/base/1.0/base.squashfs');
    const listing = await request('/images/base/latest/');
    expect(listing.status).toBe(200);
    expect(listing.body.toString()).toContain('href="base.squashfs"');
  });

  it.each(['/evil-passwd', '/evil-secret', '/evil-dir/secret.txt', '/files/escape', '/files/escape-dir/secret.txt', '/dangling'])(
    '%s (escaping or dangling) -> 404',
    async (p) => {
      const r = await request(p);
      expect(r.status).toBe(404);
      expect(r.body.toString()).not.toContain(SECRET);
      expect(r.body.toString()).not.toContain('root:');
    },
  );

  it('a symlink into a dot directory is not served', async () => {
    expect((await request('/staging-link/secret.txt')).status).toBe(404);
    expect((await request('/staging-link/')).status).toBe(404);
  });
});

describe('security', () => {
  it.each([
    '/.lock',
    '/.staging-123/secret.txt',
    '/.staging-123/',
    '/images/.hidden',
    '/%2elock',
    '/%2Estaging-123/secret.txt',
  ])('dotfile %s -> 404', async (p) => {
    const r = await request(p);
    expect(r.status).toBe(404);
    expect(r.body.toString()).not.toMatch(/staging|pid 1|hidden/);
  });

  const TRAVERSALS = [
    '/../secret.txt',
    '/../../../../etc/passwd',
    '/images/base/../../../secret.txt',
    '/images/base/latest/../../../../secret.txt',
    '/%2e%2e/secret.txt',
    '/%2E%2E/%2E%2E/%2E%2E/etc/passwd',
    '/.%2e/secret.txt',
    '/%2e./secret.txt',
    '/..%2fsecret.txt',
    '/%2e%2e%2fsecret.txt',
    '/images%2f..%2f..%2fsecret.txt',
    '/%252e%252e/secret.txt',
    '/%252e%252e%252fsecret.txt',
    '/..\\secret.txt',
    '/..%5csecret.txt',
    '/%5c..%5csecret.txt',
    '/index.html%00',
    '/index.html%00.txt',
    '/%00/../secret.txt',
    '/%c0%ae%c0%ae/secret.txt', // overlong UTF-8 dot
    '/%',
    '//etc/passwd',
    '/etc/passwd',
    '/%2fetc%2fpasswd',
    '/%2Fetc/passwd',
  ];

  it.each(TRAVERSALS)('%s -> 400/404, nothing from outside', async (p) => {
    const r = await request(p);
    expect([400, 404]).toContain(r.status);
    const body = r.body.toString();
    expect(body).not.toContain(SECRET);
    expect(body).not.toContain('root:');
    expect(r.headers['content-length']).toBe(String(r.body.length));
  });

  it('an absolute path to the secret (encoded or not) -> 400/404', async () => {
    const abs = path.join(base, 'secret.txt');
    for (const p of [abs, '/' + encodeURIComponent(abs), '/' + abs]) {
      const r = await request(p);
      expect([400, 404], p).toContain(r.status);
      expect(r.body.toString()).not.toContain(SECRET);
    }
  });

  it.each([
    '../secret.txt',
    'http://127.0.0.1/../secret.txt',
    '/..%2Fsecret.txt',
    `${'/..'.repeat(8)}/etc/passwd`,
  ])('raw request target %s -> 400/404', async (target) => {
    const { status, raw } = await rawRequest(target);
    expect([400, 404]).toContain(status);
    expect(raw).not.toContain(SECRET);
    expect(raw).not.toContain('root:');
  });

  it('%252e stays a literal file name (decoded once)', async () => {
    put('%2e', 'literal percent name');
    const r = await request('/%252e');
    expect(r.status).toBe(200);
    expect(r.body.toString()).toBe('literal percent name');
  });

  it('a FIFO is not served (and does not hang the request)', async () => {
    try {
      execFileSync('mkfifo', [path.join(pub, 'pipe')]);
    } catch {
      return; // no mkfifo on this host
    }
    expect((await request('/pipe')).status).toBe(404);
  });
});

describe('streaming and errors', () => {
  it('streams large files with backpressure and survives client aborts', async () => {
    await new Promise<void>((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port: server.port, path: '/big.bin', agent: false }, (res) => {
        expect(res.headers['content-length']).toBe(String(BIG_SIZE));
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (err.code !== 'ECONNRESET') reject(err);
      });
    });
    const line = await logLineFor(/^127\.0\.0\.1 "GET \/big\.bin" 200 \d+ \d+ms aborted$/);
    const sent = Number(/ 200 (\d+) /.exec(line)?.[1]);
    // Had the server buffered the file, it would have "sent" all of it.
    expect(sent).toBeLessThan(BIG_SIZE / 2);
    // And the server is still healthy.
    expect((await request('/index.json')).status).toBe(200);
  });

  it('a full download delivers every byte', async () => {
    const r = await request('/big.bin', { headers: { Range: `bytes=${BIG_SIZE - 4096}-` } });
    expect(r.status).toBe(206);
    expect(r.body.length).toBe(4096);
  });

  it('internal errors -> 500 without details; detail goes to the log', async () => {
    vi.spyOn(fs.promises, 'open').mockRejectedValueOnce(
      Object.assign(new Error('EIO: i/o error, open /very/private/path'), { code: 'EIO' }),
    );
    const r = await request('/index.json?boom');
    expect(r.status).toBe(500);
    expect(r.body.toString()).toBe('500 Internal Server Error\n');
    expect(r.body.toString()).not.toMatch(/private|EIO|at /);
    await logLineFor(/"GET \/index\.json\?boom" error: EIO/);
    await logLineFor(/"GET \/index\.json\?boom" 500 \d+ \d+ms$/);
    expect((await request('/index.json')).status).toBe(200);
  });
});

describe('access log', () => {
  it('one line per request: client, method, path, status, bytes, duration', async () => {
    await request('/repo/summary');
    const line = await logLineFor(/"GET \/repo\/summary" /);
    expect(line).toMatch(/^127\.0\.0\.1 "GET \/repo\/summary" 200 12 \d+ms$/);
  });

  it('records HEAD as 0 bytes, ranges as the range length, errors with their status', async () => {
    await request('/range.bin?log-head', { method: 'HEAD' });
    await request('/range.bin?log-range', { headers: { Range: 'bytes=0-99' } });
    await request('/missing?log-404');
    await request('/index.json?log-405', { method: 'DELETE' });
    await logLineFor(/^127\.0\.0\.1 "HEAD \/range\.bin\?log-head" 200 0 \d+ms$/);
    await logLineFor(/^127\.0\.0\.1 "GET \/range\.bin\?log-range" 206 100 \d+ms$/);
    await logLineFor(/^127\.0\.0\.1 "GET \/missing\?log-404" 404 14 \d+ms$/);
    await logLineFor(/^127\.0\.0\.1 "DELETE \/index\.json\?log-405" 405 \d+ \d+ms$/);
  });

  it('escapes quotes so a request stays on one parseable line', async () => {
    await request('/a"b?log-quote');
    await logLineFor(/^127\.0\.0\.1 "GET \/a%22b\?log-quote" 404 \d+ \d+ms$/);
  });
});

describe('request limits', () => {
  /** Writes a whole request as-is; resolves with the status the server answered (0: closed without one). */
  function rawSend(request: string): Promise<number> {
    return new Promise((resolve) => {
      const sock = net.connect(server.port, '127.0.0.1');
      const chunks: Buffer[] = [];
      const done = () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(Buffer.concat(chunks).toString('latin1'))?.[1] ?? 0));
      sock.on('connect', () => sock.write(request));
      sock.on('data', (c) => chunks.push(c));
      // The server may answer and close while we are still writing: EPIPE/ECONNRESET end the exchange too.
      sock.on('error', done);
      sock.on('close', done);
    });
  }

  const big = 'a'.repeat(100 * 1024);
  it.each([
    ['a 100 KB URL', `GET /${big} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`],
    ['a 100 KB header', `GET /index.json HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${big}\r\n\r\n`],
    ['10 000 headers', `GET /index.json HTTP/1.1\r\nHost: 127.0.0.1\r\n${Array.from({ length: 10_000 }, (_, i) => `X-H${i}: v\r\n`).join('')}\r\n`],
  ])('%s -> 431, and the server keeps serving', async (_what, req) => {
    expect(await rawSend(req)).toBe(431);
    expect((await request('/index.json')).status).toBe(200);
  });

  it('headers just under the 16 KiB limit are still served', async () => {
    const r = await request('/index.json', { headers: { 'X-Padding': 'p'.repeat(15 * 1024) } });
    expect(r.status).toBe(200);
  });
});
