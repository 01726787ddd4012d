/**
 * Node tokens: the secret a node shows (Authorization: Bearer) to fetch its
 * own files from the private tree. Made once per node and kept across
 * publishes, because the node carries a copy (its embedded iPXE script):
 * a new token means provisioning the node again, so only `rotate` makes one.
 * serve never sees a token, only its sha256 in private/nodes.json.
 */
import { closeSync, constants, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, writeFileSync, chmodSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import path from 'node:path';
import { renameDurable } from '../durable.js';
import type { NodeSpec } from './config.js';

/** What serve reads: private/nodes.json. */
export interface NodeIndexEntry {
  name: string;
  mac: string;
  image: string;
  tokenSha256: string;
}

export const NODES_INDEX = 'nodes.json';

export const tokenFile = (privateDir: string, name: string) => path.join(privateDir, 'nodes', name, 'token');

export const sha256Hex = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');

/**
 * Make every node's token that does not exist yet (or all of them, or the
 * named ones, with `rotate`), then rewrite private/nodes.json for `nodes`.
 * Returns the tokens by node name.
 */
export function ensureNodeTokens(privateDir: string, nodes: readonly NodeSpec[], opts: { rotate?: boolean | readonly string[] } = {}): Map<string, string> {
  const rotate = (name: string) => opts.rotate === true || (Array.isArray(opts.rotate) && opts.rotate.includes(name));
  privateDirFor(privateDir);
  const tokens = new Map<string, string>();
  for (const n of nodes) {
    const file = tokenFile(privateDir, n.name);
    let token = !rotate(n.name) && existsSync(file) ? readFileSync(file, 'utf8').trim() : '';
    if (!/^[0-9a-f]{64}$/.test(token)) {
      token = randomBytes(32).toString('hex');
      privateDirFor(path.dirname(file));
      writeSecretDurable(file, token + '\n');
    }
    tokens.set(n.name, token);
  }
  const index: NodeIndexEntry[] = nodes.map((n) => ({ name: n.name, mac: n.mac, image: n.image, tokenSha256: sha256Hex(tokens.get(n.name)!) }));
  writeSecretDurable(path.join(privateDir, NODES_INDEX), JSON.stringify(index, null, 2) + '\n');
  return tokens;
}

/** private/nodes.json, or [] when there is none. */
export function readNodeIndex(privateDir: string): NodeIndexEntry[] {
  const file = path.join(privateDir, NODES_INDEX);
  if (!existsSync(file)) return [];
  return JSON.parse(readFileSync(file, 'utf8')) as NodeIndexEntry[];
}

/** mkdir -p with mode 0700: the private tree is for treecast and serve alone. */
export function privateDirFor(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
}

/**
 * writeFileDurable with mode 0600 from the first byte: the temp file is
 * created 0600, so there is no moment where another user could open it.
 */
export function writeSecretDurable(file: string, content: string | Buffer): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.tmp-${process.pid}`);
  const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, 0o600);
  try {
    writeFileSync(fd, content);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  chmodSync(tmp, 0o600); // O_CREAT leaves an existing (stale) temp file's mode alone
  renameDurable(tmp, file);
}
