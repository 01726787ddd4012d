/**
 * nodes.yaml: the diskless fleet. Optional (absent = no nodes); parsed with
 * the manifest YAML loader so every problem is reported at its line, checked
 * against schemas/nodes.schema.json, then against the images and the input
 * policy (a node's overlays are repository inputs like an image's).
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { didYouMean, keyPath, UserError, type Diagnostic } from '../diagnostics.js';
import { checkSchema, locate } from '../manifest/schema.js';
import type { ValidManifest } from '../manifest/validate.js';
import { isBlankYaml, parseYaml, plain, type LNode } from '../manifest/yaml.js';
import { formatLoc } from '../diagnostics.js';
import { resolveRepoInput, type RepoDirs } from '../paths.js';

export const NODES_FILE = 'nodes.yaml';

/** One node of nodes.yaml, as written (MAC lower-cased). */
export interface NodeSpec {
  name: string;
  /** Lower-case, colon-separated: 52:54:00:12:34:01. */
  mac: string;
  image: string;
  /** Appended after the image's diskless kernel arguments. */
  kernelArgs: string[];
  /** Repository-relative directories, copied in order into the node's overlay archive. */
  overlays: string[];
}

/** nodes.yaml as written (the schema's shape). */
export interface NodesFile {
  $schema?: string;
  nodes?: { name: string; mac: string; image: string; 'kernel-args'?: string[]; overlays?: string[] }[];
}

export type NodesResult = { ok: true; nodes: NodeSpec[] } | { ok: false; diagnostics: Diagnostic[] };

/** The repository's nodes, valid, or a UserError listing every problem (file:line:col, the value quoted). */
export function loadNodes(repo: RepoDirs, images: ValidManifest[]): NodeSpec[] {
  const r = checkNodes(repo, images);
  if (!r.ok) throw new UserError(`invalid ${NODES_FILE}`, r.diagnostics);
  return r.nodes;
}

/** Like loadNodes, with the problems as data (for `treecast validate`). */
export function checkNodes(repo: RepoDirs, images: ValidManifest[]): NodesResult {
  const file = path.join(repo.root, NODES_FILE);
  if (!existsSync(file)) return { ok: true, nodes: [] };
  // nodes.yaml arrives with pull requests: a symlink out of the repository is not read.
  const where = resolveRepoInput(repo, NODES_FILE, 'file');
  if (!where.ok) return { ok: false, diagnostics: [{ loc: { file: NODES_FILE, line: 1, col: 1 }, message: `"${NODES_FILE}" ${where.reason}`, hint: where.hint }] };
  const text = readFileSync(where.path, 'utf8');
  if (isBlankYaml(text)) return { ok: true, nodes: [] };
  const parsed = parseYaml(text, NODES_FILE);
  if (!parsed.ok) return { ok: false, diagnostics: parsed.diagnostics };
  const value = plain(parsed.root) as NodesFile;
  const schemaDiags = checkSchema('nodes', parsed.root);
  if (schemaDiags.length) return { ok: false, diagnostics: schemaDiags.map((d) => quoteValue(d, value)) };
  const nodes = (value.nodes ?? []).map(toSpec);
  const diagnostics = checkFleet(repo, nodes, parsed.root, images);
  return diagnostics.length ? { ok: false, diagnostics } : { ok: true, nodes };
}

/** The schema's own messages for a name or MAC ("must be a hostname: ...") with the value in front. */
function quoteValue(d: Diagnostic, value: NodesFile): Diagnostic {
  const m = /^nodes\[(\d+)\]\.(name|mac)$/.exec(d.path ?? '');
  if (!m || !/^must be/.test(d.message)) return d;
  const v = (value.nodes?.[Number(m[1])] as Record<string, unknown> | undefined)?.[m[2]!];
  return v === undefined ? d : { ...d, message: `${JSON.stringify(v)} ${d.message.replace(/^must be/, 'is not valid: it must be')}` };
}

export function toSpec(n: NonNullable<NodesFile['nodes']>[number]): NodeSpec {
  return { name: n.name, mac: n.mac.toLowerCase(), image: n.image, kernelArgs: n['kernel-args'] ?? [], overlays: n.overlays ?? [] };
}

/** Rules the schema cannot say: unique names and MACs, images that exist and boot diskless, overlays inside the repository. */
function checkFleet(repo: RepoDirs, nodes: NodeSpec[], root: LNode, images: ValidManifest[]): Diagnostic[] {
  const out: Diagnostic[] = [];
  const at = (segs: (string | number)[], message: string, hint?: string) => out.push({ loc: locate(root, segs), path: keyPath(segs), message, hint });
  const firstName = new Map<string, number>();
  const firstMac = new Map<string, number>();
  const imageNames = images.map((i) => i.manifest.name);
  nodes.forEach((n, i) => {
    const seenName = firstName.get(n.name);
    if (seenName !== undefined) at(['nodes', i, 'name'], `duplicate node name "${n.name}" (first at ${formatLoc(locate(root, ['nodes', seenName, 'name']))})`, 'node names are hostnames: each is unique');
    else firstName.set(n.name, i);
    const seenMac = firstMac.get(n.mac);
    if (seenMac !== undefined) at(['nodes', i, 'mac'], `duplicate MAC "${n.mac}" (also node "${nodes[seenMac]!.name}" at ${formatLoc(locate(root, ['nodes', seenMac, 'mac']))})`, 'a MAC picks one boot script: it names one node');
    else firstMac.set(n.mac, i);
    const img = images.find((m) => m.manifest.name === n.image);
    if (!img) {
      const near = didYouMean(n.image, imageNames);
      at(['nodes', i, 'image'], `unknown image "${n.image}"`, near ? `did you mean "${near}"?` : imageNames.length ? `images: ${imageNames.join(', ')}` : 'the repository has no images');
    } else if (!img.manifest.outputs?.diskless) {
      at(['nodes', i, 'image'], `image "${n.image}" has no outputs.diskless`, `a node boots over the network: add "diskless: {}" to the outputs of ${img.shown}`);
    }
    n.overlays.forEach((o, j) => {
      // The same policy as image overlays: what validation accepts is what the archive copies.
      const r = resolveRepoInput(repo, o, 'directory');
      if (r.ok) return;
      if (r.code === 'missing') at(['nodes', i, 'overlays', j], `directory "${o}" does not exist in the repository`, 'overlay paths are relative to the repository root');
      else at(['nodes', i, 'overlays', j], `"${o}" ${r.reason}`, r.hint);
    });
  });
  return out;
}
