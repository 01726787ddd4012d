/**
 * Node tokens: the secret a node shows (Authorization: Bearer) to fetch its
 * own files from the private tree. Made once per node and kept across
 * publishes, because the node carries a copy (its embedded iPXE script):
 * a new token means provisioning the node again, so only `rotate` makes one.
 * serve never sees a token, only its sha256 in private/nodes.json.
 */
import { existsSync, mkdirSync, readFileSync, chmodSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import path from 'node:path';
import { writeFileDurable } from '../durable.js';
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
      writeFileDurable(file, token + '\n', 0o600);
    }
    tokens.set(n.name, token);
  }
  const index: NodeIndexEntry[] = nodes.map((n) => ({ name: n.name, mac: n.mac, image: n.image, tokenSha256: sha256Hex(tokens.get(n.name)!) }));
  writeFileDurable(path.join(privateDir, NODES_INDEX), JSON.stringify(index, null, 2) + '\n', 0o600);
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
