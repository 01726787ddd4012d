/**
 * Static HTTP server for treecast's publish directory.
 *
 * Why a static CDN / nginx can serve the very same tree instead of this:
 * the publish directory is self-describing plain files. `ostree pull` over
 * HTTP, iPXE, kickstart and browsers only ever issue GET/HEAD (+ Range) for
 * files that exist on disk; there is no dynamic endpoint, no auth and no
 * server-side state. Atomicity is provided by `publish` itself (it stages into
 * dot-directories and renames into place), so any server that serves files
 * with correct lengths, hides dotfiles and does not follow symlinks out of the
 * tree is equivalent. The Cache-Control policy below is a pure function of the
 * URL path and can be copied into an nginx `location` block or CDN rule.
 * This server exists so `treecast serve`, CI and tests need nothing but Node.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { pipeline } from 'node:stream';
import type { AddressInfo } from 'node:net';
import { lookupMime } from './mime.js';

export interface ServeOptions {
  /** Directory to serve (the publish root). */
  dir: string;
  /** Interface to bind; default 127.0.0.1 (never all interfaces by accident). */
  host?: string;
  /** TCP port; default 8080, 0 picks an ephemeral port. */
  port?: number;
  /** Access-log sink, one line per request; default: stderr. */
  log?: (line: string) => void;
  /**
   * The private tree (Repo.privateDir), served under /private/ to nodes
   * only: a token from private/nodes.json opens the node's own files and
   * its image's keys, nothing else. Without it, /private/ is refused.
   */
  privateDir?: string;
}

export interface RunningServer {
  /** Base URL, e.g. http://127.0.0.1:34567 (no trailing slash). */
  url: string;
  port: number;
  /** Stops listening and drops open (incl. idle keep-alive) connections. */
  close(): Promise<void>;
}

const ALLOWED_METHODS = 'GET, HEAD';

/**
 * ostree objects and static deltas are named by the checksum of their
 * content, so a given URL can never change its bytes: caches may keep them
 * forever. Everything else (refs, summary, config, index.*, boot/, kickstart/,
 * images/<name>/latest via its symlink) is rewritten on every publish.
 */
const CACHE_IMMUTABLE = 'public, max-age=31536000, immutable';
/**
 * `no-cache` still lets clients and CDNs store the response but forces a
 * revalidation, which costs a cheap 304 thanks to the ETag. It is the safe
 * default for anything not content-addressed.
 */
const CACHE_REVALIDATE = 'no-cache';

/**
 * How many connections may wait for accept(). Each `ostree pull` opens up to
 * 8 connections at once, so a fleet booting together sends hundreds of SYNs
 * in one burst: 1600 connects to a server whose event loop was busy for
 * 300 ms overflowed Node's default of 511 about 1500 times
 * (TcpExtListenOverflows), and none with 4096. A dropped SYN is retried
 * only after 1, 3, 7, 15, 31 s. The kernel caps this at net.core.somaxconn
 * (4096 by default since Linux 5.4).
 */
const LISTEN_BACKLOG = 4096;

/**
 * Far above any real fleet's concurrency (8 per pulling host), far below the
 * file descriptor limit: a flood of idle connections is refused at accept()
 * instead of exhausting descriptors the file streams need.
 */
const MAX_CONNECTIONS = 8192;

/**
 * Our clients send a GET or HEAD with a few headers in one packet, so the
 * limits on the request side can be tight without ever touching a real
 * client. Responses have no time limit: a multi-GB image to a slow link is
 * fine, and a stalled reader costs one socket and a bounded buffer
 * (streamFile respects backpressure).
 */
export const SERVER_LIMITS: http.ServerOptions = {
  // A request line + headers above 16 KiB is an attack or a bug: 431.
  maxHeaderSize: 16 * 1024,
  // Slowloris: headers dribbled a byte at a time hold a socket at most this long (then 408).
  headersTimeout: 20_000,
  requestTimeout: 30_000,
  // How often those two are checked; Node's default (30 s) would double them.
  connectionsCheckingInterval: 2_000,
  // Idle keep-alive sockets between an ostree client's requests.
  keepAliveTimeout: 5_000,
};

/** Per-server state shared by all requests. */
interface Context {
  /** realpath of opts.dir; every served file must resolve inside it. */
  root: string;
  log: (line: string) => void;
  /** Resolved lazily: the private tree may appear after serve starts (first publish). */
  privateDir?: string;
  /** private/nodes.json as last read, keyed by its stat. */
  index?: { key: string; nodes: NodeEntry[] };
}

/** What serve knows of a node: its image and the sha256 of its token (private/nodes.json). */
interface NodeEntry {
  name: string;
  image: string;
  tokenSha256: Buffer;
}

/** One request/response pair plus what the access log needs. */
interface Exchange {
  req: http.IncomingMessage;
  res: http.ServerResponse;
  /** Body bytes handed to the socket (0 for HEAD / 304). */
  bytes: number;
  /** Captured up front: after a client abort the socket no longer knows it. */
  client: string;
}

/** A request path split into decoded, validated segments. */
interface RequestPath {
  segments: string[];
  trailingSlash: boolean;
  /** Query string including '?', kept for redirects. */
  search: string;
}

interface ByteRange {
  start: number;
  end: number; // inclusive, like Content-Range
}

// ---------------------------------------------------------------------------
// Lifecycle
// ---------------------------------------------------------------------------

export async function startServer(opts: ServeOptions): Promise<RunningServer> {
  const host = opts.host ?? '127.0.0.1';
  const port = opts.port ?? 8080;
  const ctx: Context = {
    root: await resolveRoot(opts.dir),
    log: opts.log ?? ((line) => process.stderr.write(line + '\n')),
    privateDir: opts.privateDir ? path.resolve(opts.privateDir) : undefined,
  };

  const server = http.createServer(SERVER_LIMITS, (req, res) => {
    void handleExchange(ctx, { req, res, bytes: 0, client: clientAddress(req) });
  });
  server.maxConnections = MAX_CONNECTIONS;
  await listen(server, host, port);

  const actualPort = (server.address() as AddressInfo).port;
  const urlHost = host.includes(':') ? `[${host}]` : host;
  let closing: Promise<void> | undefined;

  return {
    url: `http://${urlHost}:${actualPort}`,
    port: actualPort,
    close() {
      closing ??= new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        // server.close() alone waits for idle keep-alive sockets to time out,
        // which would make every test (and Ctrl-C) hang for seconds.
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

async function resolveRoot(dir: string): Promise<string> {
  const root = await fs.promises.realpath(path.resolve(dir));
  const st = await fs.promises.stat(root);
  if (!st.isDirectory()) throw new Error(`serve: ${dir} is not a directory`);
  return root;
}

function listen(server: http.Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host, backlog: LISTEN_BACKLOG }, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

// ---------------------------------------------------------------------------
// Request handling
// ---------------------------------------------------------------------------

async function handleExchange(ctx: Context, x: Exchange): Promise<void> {
  const started = performance.now();
  // 'close' fires both after a complete response and on client abort, so it
  // is the one place that sees every request exactly once.
  x.res.on('close', () => ctx.log(accessLine(x, started)));
  try {
    await route(ctx, x);
  } catch (err) {
    // Details go to the operator's log, never to the client.
    ctx.log(`${x.client} "${x.req.method} ${logSafe(x.req.url)}" error: ${errorMessage(err)}`);
    if (!x.res.headersSent) sendText(x, 500);
    else x.res.destroy();
  }
}

async function route(ctx: Context, x: Exchange): Promise<void> {
  const { req } = x;
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    return sendText(x, 405, { Allow: ALLOWED_METHODS });
  }

  if (isPrivateUrl(req.url ?? '')) return servePrivate(ctx, x);
  const parsed = parseRequestPath(req.url ?? '');
  if (typeof parsed === 'number') return sendText(x, parsed);

  const target = await resolveInside(ctx.root, parsed.segments);
  const st = target === null ? null : await statIfExists(target);
  if (target === null || st === null) return sendText(x, 404);

  if (st.isDirectory()) {
    if (!parsed.trailingSlash) return redirectToSlash(x, parsed);
    return serveDirectory(ctx, x, target, parsed.segments);
  }
  // FIFOs, sockets and devices would block or never end: not ours to serve.
  // A trailing slash on a file is a client mistake, as in nginx.
  if (!st.isFile() || parsed.trailingSlash) return sendText(x, 404);
  return serveFile(x, target, parsed.segments);
}

/**
 * Splits and percent-decodes the path exactly once, then rejects anything
 * that could address a file outside the root. Decoding per segment means an
 * encoded slash (%2f) can never create a new path component, and decoding
 * only once means %252e stays the literal name "%2e". Returns a status code
 * on rejection.
 */
function parseRequestPath(rawUrl: string): RequestPath | 400 | 404 {
  // Absolute-form ("http://host/...") or "*" are proxy requests, not ours.
  if (!rawUrl.startsWith('/')) return 400;
  const queryAt = rawUrl.search(/[?#]/);
  const pathname = queryAt === -1 ? rawUrl : rawUrl.slice(0, queryAt);
  const search = queryAt === -1 ? '' : rawUrl.slice(queryAt);

  const segments: string[] = [];
  for (const raw of pathname.split('/')) {
    if (raw === '') continue; // leading slash, "//", trailing slash
    let name: string;
    try {
      name = decodeURIComponent(raw);
    } catch {
      return 400; // malformed %-escape
    }
    if (name === '.' || name === '..' || /[/\\\0]/.test(name)) return 400;
    // Dotfiles are publish's private state (.lock, .staging-*): never exposed.
    if (name.startsWith('.')) return 404;
    segments.push(name);
  }
  return { segments, trailingSlash: pathname.endsWith('/'), search };
}

/**
 * Resolves segments under root following symlinks, but only accepts the
 * result if its realpath is still inside root and does not pass through a
 * dotfile. This keeps `images/<name>/latest -> 1.2.3` working while a link to
 * /etc/passwd or into a `.staging-*` dir is simply "not found".
 */
async function resolveInside(root: string, segments: string[]): Promise<string | null> {
  let real: string;
  try {
    real = await fs.promises.realpath(path.join(root, ...segments));
  } catch (err) {
    if (isNotFoundLike(err)) return null;
    throw err;
  }
  const rel = path.relative(root, real);
  if (rel === '') return real;
  if (rel === '..' || rel.startsWith('..' + path.sep) || path.isAbsolute(rel)) return null;
  if (rel.split(path.sep).some((part) => part.startsWith('.'))) return null;
  return real;
}

/** stat() that treats "vanished since realpath" (publish swapping) as absent. */
async function statIfExists(file: string): Promise<fs.Stats | null> {
  try {
    return await fs.promises.stat(file);
  } catch (err) {
    if (isNotFoundLike(err)) return null;
    throw err;
  }
}

function isNotFoundLike(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP' || code === 'ENAMETOOLONG';
}

function redirectToSlash(x: Exchange, parsed: RequestPath): void {
  // Rebuilt from the decoded segments rather than echoing the raw path, so a
  // request like "//evil.example" can never produce a protocol-relative
  // Location header (open redirect).
  const location = '/' + parsed.segments.map(encodeURIComponent).join('/') + '/' + parsed.search;
  sendText(x, 301, { Location: location });
}

// ---------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------

async function serveFile(x: Exchange, filePath: string, segments: string[]): Promise<void> {
  let handle: fs.promises.FileHandle;
  try {
    handle = await fs.promises.open(filePath, 'r');
  } catch (err) {
    if (isNotFoundLike(err)) return sendText(x, 404); // unlinked since stat
    throw err;
  }

  let streaming = false;
  try {
    // fstat the open descriptor: publish replaces files by rename, and the
    // validators and length must describe exactly the bytes we stream.
    const st = await handle.stat({ bigint: true });
    if (!st.isFile()) return sendText(x, 404);
    const size = Number(st.size);
    const mtime = new Date(Number(st.mtimeMs));
    const etag = strongEtag(st);

    const headers: http.OutgoingHttpHeaders = {
      'Content-Type': lookupMime(filePath),
      'Accept-Ranges': 'bytes',
      ETag: etag,
      'Last-Modified': mtime.toUTCString(),
      'Cache-Control': cacheControlFor(segments),
      'X-Content-Type-Options': 'nosniff',
    };

    if (isNotModified(x.req, etag, mtime)) {
      x.res.writeHead(304, headers);
      x.res.end();
      return;
    }

    const range = selectRange(x.req, size, etag, mtime);
    if (range === 'unsatisfiable') {
      return sendText(x, 416, { 'Content-Range': `bytes */${size}`, 'Accept-Ranges': 'bytes' });
    }

    const { start, end } = range ?? { start: 0, end: size - 1 };
    const length = end - start + 1;
    headers['Content-Length'] = length;
    if (range) headers['Content-Range'] = `bytes ${start}-${end}/${size}`;
    x.res.writeHead(range ? 206 : 200, headers);

    if (x.req.method === 'HEAD' || length === 0) {
      x.res.end();
      return;
    }
    streaming = true;
    streamFile(x, handle, start, end);
  } finally {
    if (!streaming) await handle.close();
  }
}

/**
 * Streams [start, end] with backpressure: a multi-GB squashfs never sits in
 * memory, and a client that stops reading stops our disk reads too.
 */
function streamFile(x: Exchange, handle: fs.promises.FileHandle, start: number, end: number): void {
  const stream = handle.createReadStream({ start, end }); // autoClose: closes handle
  stream.on('data', (chunk: Buffer | string) => {
    x.bytes += chunk.length;
  });
  pipeline(stream, x.res, () => {
    // Errors here are client aborts (logged as "aborted" by the access log)
    // or read errors after the headers went out; either way pipeline has
    // already destroyed both ends and the short body tells the client.
  });
}

/**
 * Strong validator from inode + size + mtime (ns). Publish never rewrites a
 * file in place - it writes a new file and renames it - so any content change
 * changes the inode and mtime, which makes byte-for-byte equality a fair
 * promise.
 */
function strongEtag(st: fs.BigIntStats): string {
  return `"${st.ino.toString(16)}-${st.size.toString(16)}-${st.mtimeNs.toString(16)}"`;
}

function cacheControlFor(segments: string[]): string {
  const [top, area] = segments;
  if (top === PRIVATE) return CACHE_PRIVATE;
  if (top === 'repo' && (area === 'objects' || area === 'deltas')) return CACHE_IMMUTABLE;
  // repo/summary(.sig), repo/config, repo/refs/**, index.*, boot/*,
  // kickstart/*, images/*/latest/** and everything else: revalidate.
  return CACHE_REVALIDATE;
}

/** RFC 9110 §13.2.2: If-None-Match wins; If-Modified-Since only without it. */
function isNotModified(req: http.IncomingMessage, etag: string, mtime: Date): boolean {
  const inm = req.headers['if-none-match'];
  if (inm !== undefined) return etagListMatches(inm, etag);
  const ims = req.headers['if-modified-since'];
  if (ims === undefined) return false;
  const since = Date.parse(ims);
  return !Number.isNaN(since) && wholeSeconds(mtime) <= since;
}

/** Weak comparison, as If-None-Match requires. */
function etagListMatches(header: string, etag: string): boolean {
  if (header.trim() === '*') return true;
  const opaque = (tag: string) => tag.trim().replace(/^W\//, '');
  return header.split(',').some((tag) => opaque(tag) === opaque(etag));
}

/** HTTP dates have 1 s resolution; compare at that resolution. */
function wholeSeconds(date: Date): number {
  return Math.floor(date.getTime() / 1000) * 1000;
}

/**
 * Decides which bytes to send: null = the whole file (200), a range (206) or
 * 'unsatisfiable' (416). Only GET has range semantics (RFC 9110 §14.2), so a
 * HEAD with Range describes the full 200 response.
 */
function selectRange(
  req: http.IncomingMessage,
  size: number,
  etag: string,
  mtime: Date,
): ByteRange | 'unsatisfiable' | null {
  const header = req.headers.range;
  if (req.method !== 'GET' || header === undefined) return null;
  const ifRange = req.headers['if-range'];
  if (ifRange !== undefined && !ifRangeMatches(String(ifRange), etag, mtime)) return null;
  return parseRange(header, size);
}

/**
 * If-Range needs a strong match: an identical strong ETag, or an HTTP date
 * equal to Last-Modified. Otherwise the client's partial copy is stale and it
 * gets the full new file.
 */
function ifRangeMatches(value: string, etag: string, mtime: Date): boolean {
  const v = value.trim();
  if (v.startsWith('W/')) return false;
  if (v.startsWith('"')) return v === etag;
  const date = Date.parse(v);
  return !Number.isNaN(date) && date === wholeSeconds(mtime);
}

/**
 * Parses a Range header for a file of `size` bytes.
 *
 * Multi-range requests (`bytes=0-1,5-6`) are answered with the full 200 body:
 * RFC 9110 §14.2 lets a server ignore Range, none of our clients (ostree's
 * libcurl/libsoup fetcher, iPXE, anaconda, browsers resuming downloads) send
 * them, and multipart/byteranges would add a second body format to get right
 * for no user. Syntactically invalid specs and unknown units are ignored the
 * same way; only well-formed single ranges that miss the file are 416.
 */
function parseRange(header: string, size: number): ByteRange | 'unsatisfiable' | null {
  const unit = /^\s*bytes\s*=(.*)$/i.exec(header);
  if (!unit) return null;
  const specs = unit[1]!.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (specs.length !== 1) return null;
  const m = /^(\d*)-(\d*)$/.exec(specs[0]!);
  if (!m) return null;
  const [, first = '', last = ''] = m;
  if (first === '' && last === '') return null;

  if (first === '') {
    // Suffix range "-n": the last n bytes (all of them if the file is shorter).
    const n = Number(last);
    if (n === 0) return 'unsatisfiable';
    if (size === 0) return null; // nothing to slice; a 200 with 0 bytes is exact
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(first);
  if (last !== '' && Number(last) < start) return null; // invalid (RFC 9110 §14.1.1): ignore
  if (start >= size) return 'unsatisfiable';
  const end = last === '' ? size - 1 : Math.min(Number(last), size - 1);
  return { start, end };
}

// ---------------------------------------------------------------------------
// The private tree
// ---------------------------------------------------------------------------

const PRIVATE = 'private';
/** A node's overlay or an image key must not sit in any cache between the server and the node. */
const CACHE_PRIVATE = 'no-store';

/**
 * Decided on the first raw segment, before the path is parsed: a request
 * that the public parser would answer with 400 (`..`, `%2f`) must still be
 * refused and logged as a private one.
 */
function isPrivateUrl(rawUrl: string): boolean {
  const first = rawUrl.replace(/[?#].*$/s, '').split('/').find((p) => p !== '');
  if (first === undefined) return false;
  try {
    return decodeURIComponent(first) === PRIVATE;
  } catch {
    return false;
  }
}

/**
 * /private/nodes/<own name>/* (except the token) and /private/keys/<own
 * image>/* for a request with `Authorization: Bearer <token>` whose sha256 is
 * in nodes.json; everything else is 403 (never 401: there is no login to
 * offer), logged with the node, the path and why. Nothing here is listed.
 */
async function servePrivate(ctx: Context, x: Exchange): Promise<void> {
  const refuse = (reason: string, node?: string) => {
    ctx.log(`private: 403 ${x.req.method} ${logSafe(x.req.url)}: ${node ? `node ${node} ` : ''}${reason} [${x.client}]`);
    sendText(x, 403, { 'Cache-Control': CACHE_PRIVATE });
  };
  if (!ctx.privateDir) return refuse('no private dir is served');
  const parsed = parseRequestPath(x.req.url ?? '');
  if (typeof parsed === 'number') return refuse('path refused (.., an encoded slash or a dotfile)');
  const node = await authenticate(ctx, x.req);
  if (typeof node === 'string') return refuse(node);
  const [, area, owner, ...rest] = parsed.segments;
  if (area === 'nodes' && owner !== undefined) {
    if (owner !== node.name) return refuse(`asks for the files of node ${owner}`, node.name);
    if (rest.length === 1 && rest[0] === 'token') return refuse('asks for its token file, which is never served', node.name);
  } else if (area === 'keys' && owner !== undefined) {
    if (owner !== node.image) return refuse(`serves image ${node.image}, not ${owner}`, node.name);
  } else {
    return refuse("asks for something that is not a node's file or an image key", node.name);
  }
  if (rest.length === 0 || parsed.trailingSlash) return refuse('asks for a directory: directories are never listed', node.name);
  const root = await realDir(ctx.privateDir);
  const target = root === null ? null : await resolveInside(root, parsed.segments.slice(1));
  const st = target === null ? null : await statIfExists(target);
  if (target === null || st === null) return sendText(x, 404, { 'Cache-Control': CACHE_PRIVATE });
  if (!st.isFile()) return refuse('asks for a directory: directories are never listed', node.name);
  return serveFile(x, target, parsed.segments);
}

async function realDir(dir: string): Promise<string | null> {
  try {
    return await fs.promises.realpath(dir);
  } catch (err) {
    if (isNotFoundLike(err)) return null;
    throw err;
  }
}

/** The node whose token the request carries, or why there is none. */
async function authenticate(ctx: Context, req: http.IncomingMessage): Promise<NodeEntry | string> {
  const m = /^Bearer +([\x21-\x7e]+) *$/i.exec(req.headers.authorization ?? '');
  if (!m) return 'no token';
  const presented = createHash('sha256').update(m[1]!).digest();
  let found: NodeEntry | undefined;
  // Every entry is compared, in constant time each: the answer's timing says nothing about the tokens.
  for (const n of await nodeIndex(ctx)) if (timingSafeEqual(presented, n.tokenSha256)) found ??= n;
  return found ?? 'unknown token';
}

/** private/nodes.json, read again when publish replaced it (rename: a new inode and mtime). */
async function nodeIndex(ctx: Context): Promise<NodeEntry[]> {
  const file = path.join(ctx.privateDir!, 'nodes.json');
  let st: fs.Stats;
  try {
    st = await fs.promises.stat(file);
  } catch (err) {
    if (isNotFoundLike(err)) return [];
    throw err;
  }
  const key = `${st.ino}:${st.size}:${st.mtimeMs}`;
  if (ctx.index?.key === key) return ctx.index.nodes;
  let nodes: NodeEntry[] = [];
  try {
    const raw = JSON.parse(await fs.promises.readFile(file, 'utf8')) as unknown;
    if (!Array.isArray(raw)) throw new Error('not a list');
    nodes = raw
      .filter((e): e is { name: string; image: string; tokenSha256: string } => typeof e?.name === 'string' && typeof e?.image === 'string' && /^[0-9a-f]{64}$/.test(String(e?.tokenSha256)))
      .map((e) => ({ name: e.name, image: e.image, tokenSha256: Buffer.from(e.tokenSha256, 'hex') }));
  } catch (err) {
    ctx.log(`private: ${file} unreadable, no node is let in: ${errorMessage(err)}`);
  }
  ctx.index = { key, nodes };
  return nodes;
}

// ---------------------------------------------------------------------------
// Directories
// ---------------------------------------------------------------------------

async function serveDirectory(ctx: Context, x: Exchange, dir: string, segments: string[]): Promise<void> {
  const indexSegments = [...segments, 'index.html'];
  const index = await resolveInside(ctx.root, indexSegments);
  if (index !== null && (await statIfExists(index))?.isFile()) {
    return serveFile(x, index, indexSegments);
  }
  const html = await renderListing(ctx.root, dir, segments);
  sendBody(x, 200, html, {
    'Content-Type': 'text/html; charset=utf-8',
    'Cache-Control': CACHE_REVALIDATE,
  });
}

interface ListingEntry {
  name: string;
  isDir: boolean;
}

/** Lists only what a request for each entry would actually serve. */
async function listServable(root: string, dir: string, segments: string[]): Promise<ListingEntry[]> {
  const dirents = await fs.promises.readdir(dir, { withFileTypes: true });
  const entries: ListingEntry[] = [];
  for (const d of dirents) {
    if (d.name.startsWith('.')) continue;
    let isDir = d.isDirectory();
    if (d.isSymbolicLink()) {
      // Escaping or dangling links would 404, so do not advertise them.
      const real = await resolveInside(root, [...segments, d.name]);
      const st = real === null ? null : await statIfExists(real);
      if (st === null) continue;
      isDir = st.isDirectory();
    } else if (!isDir && !d.isFile()) {
      continue;
    }
    entries.push({ name: d.name, isDir });
  }
  return entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

async function renderListing(root: string, dir: string, segments: string[]): Promise<string> {
  const entries = await listServable(root, dir, segments);
  const title = escapeHtml('/' + segments.map((s) => s + '/').join(''));
  const items = entries.map((e) => {
    const suffix = e.isDir ? '/' : '';
    return `<li><a href="${escapeHtml(encodeURIComponent(e.name) + suffix)}">${escapeHtml(e.name + suffix)}</a></li>`;
  });
  if (segments.length > 0) items.unshift('<li><a href="../">../</a></li>');
  return [
    '<!doctype html>',
    `<html><head><meta charset="utf-8"><title>Index of ${title}</title></head>`,
    `<body><h1>Index of ${title}</h1>`,
    '<ul>',
    ...items,
    '</ul></body></html>',
    '',
  ].join('\n');
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

// ---------------------------------------------------------------------------
// Small responses and logging
// ---------------------------------------------------------------------------

/** Plain-text status page ("404 Not Found") - never includes error details. */
function sendText(x: Exchange, status: number, headers: http.OutgoingHttpHeaders = {}): void {
  const body = `${status} ${http.STATUS_CODES[status] ?? ''}\n`;
  sendBody(x, status, body, {
    'Content-Type': 'text/plain; charset=utf-8',
    'Cache-Control': CACHE_REVALIDATE,
    ...headers,
  });
}

function sendBody(x: Exchange, status: number, body: string, headers: http.OutgoingHttpHeaders): void {
  const buf = Buffer.from(body, 'utf8');
  x.res.writeHead(status, {
    'X-Content-Type-Options': 'nosniff',
    ...headers,
    'Content-Length': buf.length,
  });
  if (x.req.method === 'HEAD') {
    x.res.end();
    return;
  }
  x.bytes += buf.length;
  x.res.end(buf);
}

/** `127.0.0.1 "GET /repo/summary" 200 1234 3ms`, plus " aborted" if cut short. */
function accessLine(x: Exchange, started: number): string {
  const ms = Math.round(performance.now() - started);
  const aborted = x.res.writableFinished ? '' : ' aborted';
  return `${x.client} "${x.req.method} ${logSafe(x.req.url)}" ${x.res.statusCode} ${x.bytes} ${ms}ms${aborted}`;
}

function clientAddress(req: http.IncomingMessage): string {
  const addr = req.socket.remoteAddress ?? '-';
  return addr.startsWith('::ffff:') ? addr.slice(7) : addr;
}

/** Keeps one request on one log line: quotes and non-printables are %-escaped. */
function logSafe(url: string | undefined): string {
  return (url ?? '').replace(/[^\x21-\x7e]|["\\]/g, (c) => encodeURIComponent(c));
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
