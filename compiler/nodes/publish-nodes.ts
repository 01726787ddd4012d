/**
 * Publishing the fleet, after the images: per node, its token (private),
 * its overlay archive (private) and its iPXE boot script (public, by name
 * and by MAC). The public script names the token only as the iPXE setting
 * ${treecast-token}: the node brings its own copy; no token is ever public.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { writeFileDurable } from '../durable.js';
import type { Repo } from '../repo.js';
import { writeNodeArchive } from './archive.js';
import type { NodeSpec } from './config.js';
import { ensureNodeTokens, privateDirFor } from './tokens.js';

/** The image's published diskless boot. */
export interface NodeBoot {
  kernelUrl: string;
  initrdUrl: string;
  args: string[];
}

export interface PublishedNode {
  name: string;
  mac: string;
  image: string;
  /** Public path of the node's boot script, relative to the publish dir: boot/nodes/<name>.ipxe. */
  bootScript: string;
  overlaySha256: string;
}

export interface PublishNodesOptions {
  repo: Repo;
  nodes: NodeSpec[];
  publishDir: string;
  privateDir: string;
  publicUrl: string;
  /** By image name: nodes of images not here keep what an earlier publish gave them. */
  boots: Map<string, NodeBoot>;
}

/** aa-bb-cc-dd-ee-ff: iPXE's ${mac:hexhyp}. */
export const macHexhyp = (mac: string) => mac.toLowerCase().replace(/:/g, '-');

export const nodeOverlayUrl = (publicUrl: string, name: string) => `${publicUrl.replace(/\/+$/, '')}/private/nodes/${name}/overlay.tar`;

/** The node's iPXE script (pure). */
export function nodeBootScript(node: NodeSpec, boot: NodeBoot, publicUrl: string): string {
  const token = 'treecast.token=${treecast-token}';
  // An encrypted image's boot already asks for the token (for its key): once is enough.
  const args = [...boot.args, ...node.kernelArgs, `treecast.node=${node.name}`, `treecast.node-overlay=${nodeOverlayUrl(publicUrl, node.name)}`, ...(boot.args.includes(token) ? [] : [token])];
  return ['#!ipxe', `# treecast node ${node.name} (${node.mac}): image ${node.image}`, `kernel ${boot.kernelUrl} initrd=initrd.img ${args.join(' ')}`, `initrd ${boot.initrdUrl}`, 'boot', ''].join('\n');
}

/** boot/nodes.ipxe: any node chains to its own script by MAC. */
export function fleetChainScript(publicUrl: string): string {
  return ['#!ipxe', `chain ${publicUrl.replace(/\/+$/, '')}/boot/mac/\${mac:hexhyp}.ipxe`, ''].join('\n');
}

export async function publishNodes(o: PublishNodesOptions): Promise<PublishedNode[]> {
  const bootDir = path.join(o.publishDir, 'boot');
  privateDirFor(path.join(o.privateDir, 'nodes'));
  // Every node keeps (or gets) its token, so nodes.json always lists the whole fleet.
  ensureNodeTokens(o.privateDir, o.nodes);
  const published: PublishedNode[] = [];
  for (const node of o.nodes) {
    const boot = o.boots.get(node.image);
    if (!boot) continue;
    const nodeDir = path.join(o.privateDir, 'nodes', node.name);
    privateDirFor(nodeDir);
    const archive = path.join(nodeDir, 'overlay.tar');
    await writeNodeArchive(o.repo, node, archive);
    const script = nodeBootScript(node, boot, o.publicUrl);
    const bootScript = path.posix.join('boot', 'nodes', `${node.name}.ipxe`);
    writeFileDurable(path.join(o.publishDir, bootScript), script);
    writeFileDurable(path.join(bootDir, 'mac', `${macHexhyp(node.mac)}.ipxe`), script);
    published.push({ name: node.name, mac: node.mac, image: node.image, bootScript, overlaySha256: await fileSha256(archive) });
  }
  if (o.nodes.length) writeFileDurable(path.join(bootDir, 'nodes.ipxe'), fleetChainScript(o.publicUrl));
  removeStale(o);
  return published;
}

/** Nodes no longer in nodes.yaml lose their boot scripts and their private dir (token included). */
function removeStale(o: PublishNodesOptions): void {
  const names = new Set(o.nodes.map((n) => n.name));
  const macs = new Set(o.nodes.map((n) => macHexhyp(n.mac)));
  const scripts = (dir: string) => (existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.ipxe')) : []);
  for (const f of scripts(path.join(o.publishDir, 'boot', 'nodes'))) if (!names.has(f.slice(0, -5))) rmSync(path.join(o.publishDir, 'boot', 'nodes', f), { force: true });
  for (const f of scripts(path.join(o.publishDir, 'boot', 'mac'))) if (!macs.has(f.slice(0, -5))) rmSync(path.join(o.publishDir, 'boot', 'mac', f), { force: true });
  const nodesDir = path.join(o.privateDir, 'nodes');
  if (existsSync(nodesDir)) for (const d of readdirSync(nodesDir)) if (!d.startsWith('.') && !names.has(d)) rmSync(path.join(nodesDir, d), { recursive: true, force: true });
  if (!o.nodes.length) rmSync(path.join(o.publishDir, 'boot', 'nodes.ipxe'), { force: true });
}

function fileSha256(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(file)
      .on('data', (c) => h.update(c))
      .on('end', () => resolve(h.digest('hex')))
      .on('error', reject);
  });
}
