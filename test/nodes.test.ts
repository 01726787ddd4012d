/**
 * The diskless fleet (compiler/nodes): nodes.yaml errors located at their
 * line through the real CLI, the node overlay archive checked with the real
 * tar, tokens made once and rotated, the published boot scripts (no token in
 * the public tree), and `treecast plan` naming the affected nodes on a real
 * temporary git repository.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { UserError } from '../compiler/diagnostics.js';
import { loadImages } from '../compiler/images.js';
import { ensureNodeTokens, loadNodes, publishNodes, readNodeIndex, writeNodeArchive, type NodeBoot, type NodeSpec } from '../compiler/nodes/index.js';
import { STACK_TRACE } from './helpers/cli.js';
import { requireTool, sh, type Fixture } from './helpers/build-fixture.js';
import { gitopsRepo, lineOf } from './helpers/gitops-fixture.js';

/** A diskless image derived from a (a derived image needs no kernel package of its own). */
const DISKLESS = `name: dl
base: { source: image, image: a }
automatic-version-prefix: "1"
outputs:
  squashfs: {}
  diskless: { kernel-args: [panic=10] }
`;

const GOOD_NODES = `nodes:
  - name: node1
    mac: "52:54:00:12:34:01"
    image: dl
    kernel-args: [quiet]
    overlays: [nodes/common, nodes/node1]
  - name: node2
    mac: "52:54:00:12:34:02"
    image: dl
    overlays: [nodes/common]
`;

function fleetRepo(nodesYaml = GOOD_NODES): Fixture {
  return gitopsRepo({
    prefix: 'nodes',
    files: {
      'images/dl.yaml': DISKLESS,
      'nodes.yaml': nodesYaml,
      'nodes/common/etc/motd': 'common motd\n',
      'nodes/common/etc/fleet.conf': 'fleet=common\n',
      'nodes/node1/etc/fleet.conf': 'fleet=node1\n',
      'nodes/node1/opt/tool/run.sh': { content: '#!/bin/sh\necho node1\n', mode: 0o755 },
      'nodes/node1/etc/passwd-link': { symlink: '/etc/passwd' },
    },
  });
}

/** A sha256 that no token hashes to, and a fake published boot. */
const BOOT: NodeBoot = { kernelUrl: 'http://boot.example/images/dl/1.1/vmlinuz', initrdUrl: 'http://boot.example/images/dl/1.1/initrd.img', args: ['root=live:http://boot.example/images/dl/1.1/rootfs.squashfs', 'rd.live.image', 'panic=10'] };

const tarList = (file: string) => sh('tar', ['-tvf', file, '--numeric-owner']).trim().split('\n');
const sha256 = (file: string) => createHash('sha256').update(fs.readFileSync(file)).digest('hex');
const mode = (file: string) => fs.statSync(file).mode & 0o777;

function walkFiles(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true, recursive: true }).filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name));
}

beforeAll(() => {
  for (const tool of ['git', 'tar']) requireTool(tool);
});

let fx: Fixture | undefined;
let scratch: string | undefined;
afterEach(() => {
  fx?.cleanup();
  fx = undefined;
  if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
  scratch = undefined;
});
const tmp = () => (scratch ??= fs.mkdtempSync(path.join(os.tmpdir(), 'treecast-nodes-out-')));

describe('nodes.yaml: every bad input is reported at its line, with the value quoted', () => {
  const validate = (f: Fixture) => {
    const r = f.cli(['validate']);
    expect(r.stderr).not.toMatch(STACK_TRACE);
    return r;
  };
  const colOf = (text: string, line: number, needle: string) => text.split('\n')[line - 1]!.indexOf(needle) + 1;

  it('a valid nodes.yaml validates, and loadNodes lower-cases MACs', () => {
    fx = fleetRepo(GOOD_NODES.replace('52:54:00:12:34:02', '52:54:00:AB:CD:EF'));
    const r = validate(fx);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/2 node\(s\) in nodes\.yaml/);
    const repo = fx.repo();
    const nodes = loadNodes(repo, loadImages(repo).all);
    expect(nodes.map((n) => [n.name, n.mac, n.image, n.kernelArgs, n.overlays])).toEqual([
      ['node1', '52:54:00:12:34:01', 'dl', ['quiet'], ['nodes/common', 'nodes/node1']],
      ['node2', '52:54:00:ab:cd:ef', 'dl', [], ['nodes/common']],
    ]);
  });

  it('duplicate name, duplicate MAC (any case), unknown image, image without diskless, missing and escaping overlays', () => {
    const text = `nodes:
  - name: node1
    mac: "52:54:00:12:34:01"
    image: dl
  - name: node1
    mac: "52:54:00:12:34:0A"
    image: dll
  - name: node3
    mac: "52:54:00:12:34:0a"
    image: a
    overlays: [nodes/nope, ../outside, nodes/evil, .git/hooks]
`;
    fx = fleetRepo(text);
    fs.symlinkSync('/etc', path.join(fx.dir, 'nodes/evil'));
    const r = validate(fx);
    expect(r.code).toBe(1);
    const at = (line: number, needle: string) => `nodes.yaml:${line}:${colOf(text, line, needle)}`;
    expect(r.stderr).toContain(`${at(5, 'node1')}: nodes[1].name: duplicate node name "node1" (first at ${at(2, 'node1')})`);
    expect(r.stderr).toContain(`${at(9, '"52')}: nodes[2].mac: duplicate MAC "52:54:00:12:34:0a" (also node "node1" at ${at(6, '"52')})`);
    expect(r.stderr).toContain(`${at(7, 'dll')}: nodes[1].image: unknown image "dll" (hint: did you mean "dl"?)`);
    expect(r.stderr).toContain(`nodes.yaml:10:${colOf(text, 10, ': a') + 2}: nodes[2].image: image "a" has no outputs.diskless`);
    const ov = lineOf(text, /overlays:/);
    expect(r.stderr).toContain(`${at(ov, 'nodes/nope')}: nodes[2].overlays[0]: directory "nodes/nope" does not exist in the repository`);
    expect(r.stderr).toContain(`${at(ov, '../outside')}: nodes[2].overlays[1]: "../outside" is outside the repository`);
    expect(r.stderr).toContain(`${at(ov, 'nodes/evil')}: nodes[2].overlays[2]: "nodes/evil" leaves the repository through the symlink nodes/evil -> /etc`);
    expect(r.stderr).toContain(`${at(ov, '.git/hooks')}: nodes[2].overlays[3]: ".git/hooks" is inside the git directory`);
    expect(r.stderr).toMatch(/^8 problem\(s\) found$/m);
  });

  it('schema errors: a name that is no hostname, a MAC that is no MAC, an unknown key, a missing image', () => {
    const text = `nodes:
  - name: Node_1
    mac: "52:54:00:12:34"
    image: dl
    kernel-arg: [quiet]
  - name: node2
    mac: "52:54:00:12:34:02"
`;
    fx = fleetRepo(text);
    const r = validate(fx);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^nodes\\.yaml:2:${colOf(text, 2, 'Node_1')}: nodes\\[0\\]\\.name: "Node_1" is not valid: it must be a hostname`, 'm'));
    expect(r.stderr).toMatch(new RegExp(`^nodes\\.yaml:3:${colOf(text, 3, '"52')}: nodes\\[0\\]\\.mac: "52:54:00:12:34" is not valid: it must be a MAC address`, 'm'));
    expect(r.stderr).toMatch(/^nodes\.yaml:5:5: nodes\[0\]\.kernel-arg: .*"kernel-arg".*did you mean "kernel-args"/m);
    expect(r.stderr).toMatch(/^nodes\.yaml:6:5: nodes\[1\]: missing required key "image"$/m);
  });

  it('the private dir (tokens) is never an input: not as a node overlay, not as an image overlay', () => {
    fx = fleetRepo(GOOD_NODES.replace('overlays: [nodes/common]\n', 'overlays: [private/nodes/node1]\n'));
    fx.write('private/nodes/node1/token', 'f'.repeat(64) + '\n');
    fx.write('images/dl.yaml', DISKLESS + 'overlays: [private]\n');
    const r = validate(fx);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^nodes\.yaml:10:\d+: nodes\[1\]\.overlays\[0\]: "private\/nodes\/node1" is inside the private dir/m);
    expect(r.stderr).toMatch(/^images\/dl\.yaml:7:\d+: overlays\[0\]: "private" is the private dir/m);
  });

  it('loadNodes throws a UserError with the diagnostics; plan refuses an invalid nodes.yaml without a stack', () => {
    fx = fleetRepo(GOOD_NODES.replace('image: dl\n    overlays: [nodes/common]', 'image: nope\n    overlays: [nodes/common]'));
    const repo = fx.repo();
    let err: unknown;
    try {
      loadNodes(repo, loadImages(repo).all);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UserError);
    expect((err as UserError).diagnostics.map((d) => d.message)).toEqual(['unknown image "nope"']);
    const r = fx.cli(['plan']);
    expect(r.code).toBe(1);
    expect(r.stderr).not.toMatch(STACK_TRACE);
    expect(r.stderr).toMatch(/nodes\.yaml:9:\d+: nodes\[1\]\.image: unknown image "nope"/);
  });

  it('no nodes.yaml, or an empty one: no nodes', () => {
    fx = fleetRepo('# the fleet, later\n');
    const repo = fx.repo();
    expect(loadNodes(repo, loadImages(repo).all)).toEqual([]);
    fx.remove('nodes.yaml');
    expect(loadNodes(repo, loadImages(repo).all)).toEqual([]);
    expect(validate(fx).code).toBe(0);
  });
});

describe('node overlay archive', () => {
  const node1 = (f: Fixture): NodeSpec => loadNodes(f.repo(), loadImages(f.repo()).all)[0]!;

  it('holds the overlays in order (later wins), symlinks as links, /etc/hostname; owners 0/0, one mtime', async () => {
    fx = fleetRepo();
    const dest = path.join(tmp(), 'overlay.tar');
    await writeNodeArchive({ ...fx.repo(), config: { 'source-date-epoch': 1_700_000_000 } }, node1(fx), dest);
    const list = tarList(dest);
    const names = list.map((l) => l.split(/\s+/).slice(5).join(' '));
    expect(names).toEqual(['etc/', 'etc/fleet.conf', 'etc/hostname', 'etc/motd', 'etc/passwd-link -> /etc/passwd', 'opt/', 'opt/tool/', 'opt/tool/run.sh']);
    for (const l of list) expect(l.split(/\s+/)[1]).toBe('0/0');
    for (const l of list) expect(l).toContain('2023-11-14 22:13');
    expect(list.find((l) => l.endsWith('run.sh'))).toMatch(/^-rwxr-xr-x /);
    const out = path.join(tmp(), 'x');
    fs.mkdirSync(out);
    sh('tar', ['-xf', dest, '-C', out]);
    expect(fs.readFileSync(path.join(out, 'etc/hostname'), 'utf8')).toBe('node1\n');
    expect(fs.readFileSync(path.join(out, 'etc/fleet.conf'), 'utf8')).toBe('fleet=node1\n');
    expect(fs.readFileSync(path.join(out, 'etc/motd'), 'utf8')).toBe('common motd\n');
    expect(fs.readlinkSync(path.join(out, 'etc/passwd-link'))).toBe('/etc/passwd');
    // Nothing of the host's /etc/passwd came along.
    expect(fs.readFileSync(dest).includes(Buffer.from('root:x:0:0'))).toBe(false);
    // No stray staging dir or temp file beside the archive.
    expect(fs.readdirSync(path.dirname(dest)).sort()).toEqual(['overlay.tar', 'x']);
  });

  it('is byte-for-byte the same for the same inputs, whatever the file times; SOURCE_DATE_EPOCH sets the mtime', async () => {
    fx = fleetRepo();
    const a = path.join(tmp(), 'a.tar');
    const b = path.join(tmp(), 'b.tar');
    await writeNodeArchive(fx.repo(), node1(fx), a);
    const later = new Date(Date.now() + 3_600_000);
    for (const f of ['nodes/common/etc/motd', 'nodes/node1/etc/fleet.conf', 'nodes/node1/opt/tool']) fs.utimesSync(path.join(fx.dir, f), later, later);
    await writeNodeArchive(fx.repo(), node1(fx), b);
    expect(sha256(b)).toBe(sha256(a));
    const prev = process.env.SOURCE_DATE_EPOCH;
    process.env.SOURCE_DATE_EPOCH = '1704067200';
    try {
      await writeNodeArchive(fx.repo(), node1(fx), b);
    } finally {
      if (prev === undefined) delete process.env.SOURCE_DATE_EPOCH;
      else process.env.SOURCE_DATE_EPOCH = prev;
    }
    expect(sha256(b)).not.toBe(sha256(a));
    expect(tarList(b).every((l) => l.includes('2024-01-01 00:00'))).toBe(true);
  });
});

describe('node tokens', () => {
  const nodes: NodeSpec[] = [
    { name: 'n1', mac: '52:54:00:00:00:01', image: 'dl', kernelArgs: [], overlays: [] },
    { name: 'n2', mac: '52:54:00:00:00:02', image: 'dl', kernelArgs: [], overlays: [] },
  ];

  it('are made once (32 random bytes, hex, 0600) and kept; nodes.json (0600) has their sha256 only', () => {
    const priv = path.join(tmp(), 'private');
    const first = ensureNodeTokens(priv, nodes);
    expect([...first.values()].every((t) => /^[0-9a-f]{64}$/.test(t))).toBe(true);
    expect(first.get('n1')).not.toBe(first.get('n2'));
    const file = path.join(priv, 'nodes/n1/token');
    expect(fs.readFileSync(file, 'utf8').trim()).toBe(first.get('n1'));
    expect(mode(file)).toBe(0o600);
    expect(mode(path.join(priv, 'nodes.json'))).toBe(0o600);
    expect(mode(priv)).toBe(0o700);
    const again = ensureNodeTokens(priv, nodes);
    expect(again).toEqual(first);
    const index = readNodeIndex(priv);
    expect(index).toEqual(nodes.map((n) => ({ name: n.name, mac: n.mac, image: n.image, tokenSha256: createHash('sha256').update(first.get(n.name)!).digest('hex') })));
    expect(fs.readFileSync(path.join(priv, 'nodes.json'), 'utf8')).not.toContain(first.get('n1')!);
    expect(fs.readdirSync(path.join(priv, 'nodes/n1'))).toEqual(['token']);
  });

  it('rotate makes new ones: all, or the named nodes only', () => {
    const priv = path.join(tmp(), 'private');
    const first = ensureNodeTokens(priv, nodes);
    const one = ensureNodeTokens(priv, nodes, { rotate: ['n2'] });
    expect(one.get('n1')).toBe(first.get('n1'));
    expect(one.get('n2')).not.toBe(first.get('n2'));
    const all = ensureNodeTokens(priv, nodes, { rotate: true });
    expect(all.get('n1')).not.toBe(first.get('n1'));
    expect(all.get('n2')).not.toBe(one.get('n2'));
    expect(readNodeIndex(priv).find((e) => e.name === 'n1')!.tokenSha256).toBe(createHash('sha256').update(all.get('n1')!).digest('hex'));
  });
});

describe('publishNodes', () => {
  it('writes the boot scripts (by name, by MAC, the fleet chain) without any token, the overlays privately; removed nodes lose their files', async () => {
    fx = fleetRepo();
    const repo = fx.repo();
    const nodes = loadNodes(repo, loadImages(repo).all);
    const publishDir = path.join(tmp(), 'public');
    const privateDir = path.join(tmp(), 'private');
    const publicUrl = 'http://boot.example/';
    const published = await publishNodes({ repo, nodes, publishDir, privateDir, publicUrl, boots: new Map([['dl', BOOT]]) });
    expect(published.map((p) => [p.name, p.mac, p.image, p.bootScript])).toEqual([
      ['node1', '52:54:00:12:34:01', 'dl', 'boot/nodes/node1.ipxe'],
      ['node2', '52:54:00:12:34:02', 'dl', 'boot/nodes/node2.ipxe'],
    ]);
    for (const p of published) expect(p.overlaySha256).toBe(sha256(path.join(privateDir, 'nodes', p.name, 'overlay.tar')));
    const script = fs.readFileSync(path.join(publishDir, 'boot/nodes/node1.ipxe'), 'utf8');
    expect(script).toBe(
      [
        '#!ipxe',
        '# treecast node node1 (52:54:00:12:34:01): image dl',
        'kernel http://boot.example/images/dl/1.1/vmlinuz initrd=initrd.img root=live:http://boot.example/images/dl/1.1/rootfs.squashfs rd.live.image panic=10 quiet treecast.node=node1 treecast.node-overlay=http://boot.example/private/nodes/node1/overlay.tar treecast.token=${treecast-token}',
        'initrd http://boot.example/images/dl/1.1/initrd.img',
        'boot',
        '',
      ].join('\n'),
    );
    expect(fs.readFileSync(path.join(publishDir, 'boot/mac/52-54-00-12-34-01.ipxe'), 'utf8')).toBe(script);
    expect(fs.readFileSync(path.join(publishDir, 'boot/nodes.ipxe'), 'utf8')).toBe('#!ipxe\nchain http://boot.example/boot/mac/${mac:hexhyp}.ipxe\n');
    // No token, nor its hash, anywhere in the public tree.
    const tokens = readNodeIndex(privateDir);
    const secrets = [...tokens.map((t) => t.tokenSha256), ...nodes.map((n) => fs.readFileSync(path.join(privateDir, 'nodes', n.name, 'token'), 'utf8').trim())];
    const publicFiles = walkFiles(publishDir);
    expect(publicFiles.length).toBe(5);
    for (const f of publicFiles) for (const s of secrets) expect(fs.readFileSync(f, 'utf8')).not.toContain(s);
    expect(mode(path.join(privateDir, 'nodes/node1/overlay.tar'))).toBe(0o600);

    // A second publish keeps the tokens; node2 leaves nodes.yaml: its boot files and private dir go.
    const token1 = fs.readFileSync(path.join(privateDir, 'nodes/node1/token'), 'utf8');
    await publishNodes({ repo, nodes: [nodes[0]!], publishDir, privateDir, publicUrl, boots: new Map([['dl', BOOT]]) });
    expect(fs.readFileSync(path.join(privateDir, 'nodes/node1/token'), 'utf8')).toBe(token1);
    expect(fs.existsSync(path.join(publishDir, 'boot/nodes/node2.ipxe'))).toBe(false);
    expect(fs.existsSync(path.join(publishDir, 'boot/mac/52-54-00-12-34-02.ipxe'))).toBe(false);
    expect(fs.existsSync(path.join(privateDir, 'nodes/node2'))).toBe(false);
    expect(readNodeIndex(privateDir).map((e) => e.name)).toEqual(['node1']);

    // A publish without the node's image (another image published) leaves its boot script alone.
    const before = fs.readFileSync(path.join(publishDir, 'boot/nodes/node1.ipxe'), 'utf8');
    expect(await publishNodes({ repo, nodes: [nodes[0]!], publishDir, privateDir, publicUrl, boots: new Map() })).toEqual([]);
    expect(fs.readFileSync(path.join(publishDir, 'boot/nodes/node1.ipxe'), 'utf8')).toBe(before);
  });
});

describe('plan: nodes a change affects', () => {
  interface PlanNodes {
    affected: { name: string }[];
    nodes: { name: string; image: string; reasons: string[] }[];
  }
  const plan = (f: Fixture): PlanNodes => {
    const r = f.cli(['plan', '--json', '--since', 'HEAD~1']);
    expect(r.stderr).not.toMatch(STACK_TRACE);
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as PlanNodes;
  };

  it('a file of one node overlay: that node; a shared overlay: both; no image is built for either', () => {
    fx = fleetRepo();
    fx.write('nodes/node1/etc/fleet.conf', 'fleet=node1 v2\n');
    fx.commit('node1 config');
    let p = plan(fx);
    expect(p.affected).toEqual([]);
    expect(p.nodes).toEqual([{ name: 'node1', image: 'dl', reasons: ['nodes/node1/etc/fleet.conf changed (node overlay nodes/node1)'] }]);
    fx.write('nodes/common/etc/motd', 'v2\n');
    fx.commit('common motd');
    p = plan(fx);
    expect(p.nodes.map((n) => [n.name, n.reasons])).toEqual([
      ['node1', ['nodes/common/etc/motd changed (node overlay nodes/common)']],
      ['node2', ['nodes/common/etc/motd changed (node overlay nodes/common)']],
    ]);
  });

  it('an edited nodes.yaml entry: that node only; a new node: new in nodes.yaml', () => {
    fx = fleetRepo();
    fx.write('nodes.yaml', GOOD_NODES.replace('kernel-args: [quiet]', 'kernel-args: [quiet, debug]') + '  - name: node3\n    mac: "52:54:00:12:34:03"\n    image: dl\n');
    fx.commit('node1 debug, node3');
    const p = plan(fx);
    expect(p.nodes).toEqual([
      { name: 'node1', image: 'dl', reasons: ['its nodes.yaml entry changed'] },
      { name: 'node3', image: 'dl', reasons: ['new in nodes.yaml'] },
    ]);
  });

  it('a change to the image (through its base a): every node of it, and the text output has a nodes section', () => {
    fx = fleetRepo();
    fx.write('overlays/oa/etc/oa/config', 'oa v2\n');
    fx.commit('edit oa');
    const p = plan(fx);
    expect(p.affected.map((a) => a.name).sort()).toEqual(['a', 'dl']);
    expect(p.nodes).toEqual([
      { name: 'node1', image: 'dl', reasons: ['its image dl is affected'] },
      { name: 'node2', image: 'dl', reasons: ['its image dl is affected'] },
    ]);
    const r = fx.cli(['plan', '--since', 'HEAD~1'], { env: { NO_COLOR: '1' } });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('\nnodes (publish writes their overlay and boot script)\n  node1 (image dl)\n    because its image dl is affected\n  node2 (image dl)\n');
  });
});
