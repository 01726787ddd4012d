/**
 * The private tree through the real server (compiler/serve, 127.0.0.1, port
 * 0): a node's token opens its own files and its image's keys, nothing else;
 * every refusal is a 403 that the log explains. fetch() for the ordinary
 * requests; node:http for traversal attempts, which fetch would normalise
 * before they ever reached the server.
 */
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ensureNodeTokens, type NodeSpec } from '../compiler/nodes/index.js';
import { startServer, type RunningServer } from '../compiler/serve/index.js';

const NODES: NodeSpec[] = [
  { name: 'n1', mac: '52:54:00:00:00:01', image: 'x', kernelArgs: [], overlays: [] },
  { name: 'n2', mac: '52:54:00:00:00:02', image: 'y', kernelArgs: [], overlays: [] },
];

let base: string;
let pub: string;
let priv: string;
let server: RunningServer;
let tokens: Map<string, string>;
const logs: string[] = [];

const put = (file: string, content: string) => {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, content);
};

beforeAll(async () => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'treecast-serve-private-'));
  pub = path.join(base, 'public');
  priv = path.join(base, 'private');
  put(path.join(pub, 'boot/nodes.ipxe'), '#!ipxe\n');
  tokens = ensureNodeTokens(priv, NODES);
  put(path.join(priv, 'nodes/n1/overlay.tar'), 'OVERLAY-OF-N1');
  put(path.join(priv, 'nodes/n2/overlay.tar'), 'OVERLAY-OF-N2');
  put(path.join(priv, 'keys/x/1/rootfs.key'), 'KEY-OF-X');
  put(path.join(priv, 'keys/y/1/rootfs.key'), 'KEY-OF-Y');
  put(path.join(priv, 'nodes/n1/.hidden'), 'DOTFILE');
  put(path.join(base, 'outside.txt'), 'OUTSIDE');
  fs.symlinkSync(path.join(base, 'outside.txt'), path.join(priv, 'nodes/n1/escape'));
  server = await startServer({ dir: pub, privateDir: priv, host: '127.0.0.1', port: 0, log: (l) => logs.push(l) });
});

afterAll(async () => {
  await server?.close();
  if (base) fs.rmSync(base, { recursive: true, force: true });
});

beforeEach(() => {
  logs.length = 0;
});

const bearer = (node: string) => ({ Authorization: `Bearer ${tokens.get(node)!}` });
const get = (p: string, headers: Record<string, string> = {}) => fetch(server.url + p, { headers });

/** A request target sent verbatim (no URL normalisation). */
function raw(target: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: server.port, path: target, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The refusal lines logged (access lines excluded). */
const refusals = () => logs.filter((l) => l.startsWith('private: 403 '));

describe('serve: the private tree', () => {
  it('own overlay with the node token: 200, no-store', async () => {
    const r = await get('/private/nodes/n1/overlay.tar', bearer('n1'));
    expect(r.status).toBe(200);
    expect(await r.text()).toBe('OVERLAY-OF-N1');
    expect(r.headers.get('cache-control')).toBe('no-store');
    expect(refusals()).toEqual([]);
  });

  it("own image's key: 200", async () => {
    const r = await get('/private/keys/x/1/rootfs.key', bearer('n1'));
    expect(r.status).toBe(200);
    expect(await r.text()).toBe('KEY-OF-X');
  });

  it('no token: 403 without WWW-Authenticate, logged', async () => {
    const r = await get('/private/nodes/n1/overlay.tar');
    expect(r.status).toBe(403);
    expect(r.headers.get('www-authenticate')).toBeNull();
    expect(r.headers.get('cache-control')).toBe('no-store');
    expect(await r.text()).not.toContain('OVERLAY');
    expect(refusals()).toEqual([expect.stringMatching(/^private: 403 GET \/private\/nodes\/n1\/overlay\.tar: no token/)]);
  });

  it('an unknown token: 403, logged (the token itself never is)', async () => {
    const wrong = 'f'.repeat(64);
    const r = await get('/private/nodes/n1/overlay.tar', { Authorization: `Bearer ${wrong}` });
    expect(r.status).toBe(403);
    expect(refusals()).toEqual([expect.stringMatching(/^private: 403 GET \/private\/nodes\/n1\/overlay\.tar: unknown token/)]);
    expect(logs.join('\n')).not.toContain(wrong);
  });

  it("another node's overlay: 403, logged with the node", async () => {
    const r = await get('/private/nodes/n2/overlay.tar', bearer('n1'));
    expect(r.status).toBe(403);
    expect(await r.text()).not.toContain('OVERLAY');
    expect(refusals()).toEqual([expect.stringMatching(/^private: 403 GET \/private\/nodes\/n2\/overlay\.tar: node n1 asks for the files of node n2/)]);
  });

  it("another image's key: 403, logged", async () => {
    const r = await get('/private/keys/x/1/rootfs.key', bearer('n2'));
    expect(r.status).toBe(403);
    expect(refusals()).toEqual([expect.stringMatching(/^private: 403 GET \/private\/keys\/x\/1\/rootfs\.key: node n2 serves image y, not x/)]);
  });

  it('the token file, even its own: 403', async () => {
    const r = await get('/private/nodes/n1/token', bearer('n1'));
    expect(r.status).toBe(403);
    expect(await r.text()).not.toContain(tokens.get('n1')!);
    expect(refusals()).toEqual([expect.stringMatching(/^private: 403 GET \/private\/nodes\/n1\/token: node n1 asks for its token file, which is never served/)]);
  });

  it('nodes.json, directories and dotfiles: 403, never listed', async () => {
    for (const p of ['/private/nodes.json', '/private/', '/private', '/private/nodes/', '/private/nodes/n1/', '/private/keys/x/', '/private/keys/x/1/', '/private/nodes/n1/.hidden']) {
      const r = await get(p, bearer('n1'));
      expect(r.status, p).toBe(403);
      const body = await r.text();
      expect(body, p).not.toMatch(/overlay|rootfs|token|DOTFILE|Index of/);
    }
    expect(refusals()).toHaveLength(8);
  });

  it('traversal: "..", encoded dots and slashes, a symlink out of the tree; all refused and logged', async () => {
    const attempts = [
      '/private/nodes/n1/../n2/overlay.tar',
      '/private/nodes/n1/%2e%2e/n2/overlay.tar',
      '/private/nodes/n1/%2E%2E%2Fn2%2Foverlay.tar',
      '/private/nodes/n1/..%2fn2%2foverlay.tar',
      '/private/nodes/n1/../../nodes.json',
      '/%70rivate/nodes/n1/../n2/overlay.tar',
      '/private/nodes/n1/..%5c..%5cnodes.json',
    ];
    for (const t of attempts) {
      const r = await raw(t, bearer('n1'));
      expect(r.status, t).toBe(403);
      expect(r.body, t).not.toMatch(/OVERLAY|token/);
    }
    expect(refusals()).toHaveLength(attempts.length);
    const link = await raw('/private/nodes/n1/escape', bearer('n1'));
    expect(link.status).toBe(404);
    expect(link.body).not.toContain('OUTSIDE');
  });

  it('a replaced nodes.json is read again: a rotated token stops working, the new one works', async () => {
    const old = tokens.get('n1')!;
    const fresh = ensureNodeTokens(priv, NODES, { rotate: ['n1'] });
    try {
      const r1 = await get('/private/nodes/n1/overlay.tar', { Authorization: `Bearer ${old}` });
      expect(r1.status).toBe(403);
      const r2 = await get('/private/nodes/n1/overlay.tar', { Authorization: `Bearer ${fresh.get('n1')!}` });
      expect(r2.status).toBe(200);
    } finally {
      tokens = fresh;
    }
  });

  it('the public tree is served as before, and /private is not part of it', async () => {
    const r = await get('/boot/nodes.ipxe');
    expect(r.status).toBe(200);
    expect(r.headers.get('cache-control')).toBe('no-cache');
    const listing = await (await get('/')).text();
    expect(listing).not.toContain('private');
  });
});

describe('serve without a private dir', () => {
  it('refuses /private/ (and logs it)', async () => {
    const s = await startServer({ dir: pub, host: '127.0.0.1', port: 0, log: (l) => logs.push(l) });
    try {
      const r = await fetch(`${s.url}/private/nodes/n1/overlay.tar`, { headers: bearer('n1') });
      expect(r.status).toBe(403);
      expect(refusals()).toEqual([expect.stringMatching(/no private dir is served/)]);
    } finally {
      await s.close();
    }
  });
});
