import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { EXIT, UsageError } from '../diagnostics.js';
import { loadImages } from '../images.js';
import { ensureNodeTokens, loadNodes, readNodeIndex, sha256Hex, tokenFile } from '../nodes/index.js';
import { withPublishLock } from '../publish/lock.js';
import { openRepo } from '../repo.js';
import { printJson, type Command } from './command.js';

export const nodesCommand: Command = {
  name: 'nodes',
  summary: 'list the diskless fleet of nodes.yaml with its tokens and boot scripts; rotate node tokens',
  usage: 'treecast nodes [--rotate NODE]... [--rotate-all] [--json]',
  help: [
    'Lists each node of nodes.yaml: MAC, image, its public boot script, its token file under the private',
    'tree (what to provision on the node, e.g. `set treecast-token ...` in its embedded iPXE script) and',
    'whether `treecast serve` knows that token (private/nodes.json). Tokens are made by the first publish.',
    'Options:',
    '  --rotate NODE  make a new token for NODE now (repeatable); the old one is refused at once by serve,',
    '                 so provision the node with the new one before it boots again',
    '  --rotate-all   the same for every node',
    '  --json         [{name, mac, image, bootScript, tokenFile, token: "none"|"served"|"not served"}]',
  ].join('\n'),
  options: { rotate: { type: 'string', multiple: true }, 'rotate-all': { type: 'boolean' } },
  async run(ctx) {
    const repo = openRepo({ repo: ctx.repo });
    const { all } = loadImages(repo);
    const nodes = loadNodes(repo, all);
    const rotate = (ctx.values.rotate as string[] | undefined) ?? [];
    const unknown = rotate.filter((n) => !nodes.some((x) => x.name === n));
    if (unknown.length) throw new UsageError(`--rotate: no node named ${unknown.map((n) => `"${n}"`).join(', ')} in nodes.yaml (nodes: ${nodes.map((n) => n.name).join(', ') || 'none'})`);
    if (rotate.length || ctx.values['rotate-all']) {
      // Publish writes the private tree under the publish lock: so does a rotation.
      mkdirSync(repo.publishDir, { recursive: true });
      await withPublishLock(repo.publishDir, async () => {
        ensureNodeTokens(repo.privateDir, nodes, { rotate: ctx.values['rotate-all'] ? true : rotate });
      });
    }
    const served = new Map(readNodeIndex(repo.privateDir).map((e) => [e.name, e.tokenSha256]));
    const rows = nodes.map((n) => {
      const file = tokenFile(repo.privateDir, n.name);
      const token = existsSync(file) ? readFileSync(file, 'utf8').trim() : undefined;
      const state = token === undefined ? 'none' : served.get(n.name) === sha256Hex(token) ? 'served' : 'not served';
      return { name: n.name, mac: n.mac, image: n.image, bootScript: path.join(repo.publishDir, 'boot', 'nodes', `${n.name}.ipxe`), tokenFile: file, token: state };
    });
    if (ctx.json) {
      printJson(rows);
      return EXIT.ok;
    }
    if (!rows.length) process.stdout.write('no nodes (nodes.yaml lists none)\n');
    for (const r of rows) {
      const tokenNote = r.token === 'none' ? 'no token yet (publish makes one)' : r.token === 'served' ? `token ${r.tokenFile}` : `token ${r.tokenFile} (not in private/nodes.json yet: publish)`;
      process.stdout.write(`${r.name}  ${r.mac}  ${r.image}  ${existsSync(r.bootScript) ? r.bootScript : '(not published yet)'}  ${tokenNote}\n`);
    }
    if (rotate.length || ctx.values['rotate-all']) process.stdout.write(`new token(s) for ${ctx.values['rotate-all'] ? 'every node' : rotate.join(', ')}: provision the node(s) before they boot again\n`);
    return EXIT.ok;
  },
};
