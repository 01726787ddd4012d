/**
 * Confinement, black box: manifests, overlays, base trees and postprocess
 * scripts come from pull requests and treecast runs as root, so a symlink
 * planted in the image must never make a later step or an output act on the
 * build host. Every case below plants absolute links (`/etc/ssh -> <canary>`)
 * and relative ones that climb out (`../../…/<canary>`) at a path some step
 * or output touches, builds with the real CLI (`treecast build --json`, and
 * `treecast publish` for the kernel cases) and asserts:
 *
 *   1. the canaries outside the repository are byte-, mode- and owner-identical
 *      (and nothing was added next to them);
 *   2. the build succeeds with the write kept inside the image (the commit
 *      shows the link as written, or the step's own result), or is refused
 *      with exit 1 and a message naming the planted path — never exit 3
 *      (internal bug), never a stack trace;
 *   3. no artifact (every out-dir file; squashfs extracted; tarball
 *      decompressed; vmlinuz/initrd.img; the publish tree) and nothing the
 *      CLI printed holds bytes of a canary file.
 *
 * A link is planted by files[] (`symlink:`), by an overlay holding the link,
 * or by a postprocess script (`ln -s`). Postprocess runs after files, users
 * and units, so it only attacks finalize and the outputs; remove-files runs
 * before overlays and files, so it is attacked from a base tree or a base
 * image instead. When the base tree has a directory where the link goes,
 * remove-files clears it first (overlays and files[] refuse to replace a
 * directory by a link, which would hide the attack behind an early refusal).
 *
 * The code under test really escapes, so every target is checked to lead
 * into this file's own canary dirs under the temp dir before anything is
 * written (hostile-fixture.ts assertAimsAtCanary). Each case has its own
 * canaries, so builds run a few at a time and one escape cannot blame another
 * case.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { STACK_TRACE } from '../helpers/cli.js';
import { makeRepo, ostreeCat, ostreeLs, requireTool, sh, shellTree, type BuiltImage, type FileSpec, type Fixture, type Listing } from '../helpers/build-fixture.js';
import { makeCanaries, type Canaries } from './canary.js';
import { assertAimsAtCanary, canaryBytesIn, canaryBytesInOutput, escapingRelative, pool, treecast, type RunResult } from './hostile-fixture.js';

const SSH_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIConfinementFixtureKeyOnly app@test';
/** Contents of shellTree's fixture kernel (usr/lib/modules/6.1.0-test). */
const FIXTURE_KERNEL = 'fixture kernel image, not bootable\n';
const FIXTURE_INITRAMFS = 'fixture initramfs, not bootable\n';

const USERS = `users:\n  - { name: app, uid: 2000, ssh-authorized-keys: [${JSON.stringify(SSH_KEY)}] }\n`;
const UNITS = 'units: { enable: [app.service], mask: [noisy.timer] }\ndefault-target: multi-user.target\n';

type Way = 'files' | 'overlay' | 'postprocess' | 'base-tree' | 'base-image';
type Form = 'absolute' | 'relative';

/** What the build produced, for the in-image checks of a successful build. */
interface Built {
  img: BuiltImage;
  ls: Listing;
  cat: (imagePath: string) => string;
}

/** A planted link: image path and the target string written into the link. */
interface Planted {
  at: string;
  target: string;
}

interface Attack {
  id: string;
  /** The step or output, and what it does at the attacked path. */
  step: string;
  /** Image path -> host path inside the canary dir it aims at. */
  links: (c: Canaries) => { at: string; to: string }[];
  ways: readonly Way[];
  /** A directory of the base tree standing where the link goes: removed first. */
  clear?: string;
  /** More manifest keys (users, units, remove-files). */
  extra?: string;
  removeFiles?: string[];
  /**
   * Also the diskless output (vmlinuz + initrd.img + boot.ipxe). Validation
   * only allows it on an image derived from another image, so these cases
   * build `kbase` (the shell tree with its fixture kernel) and derive from it.
   */
  diskless?: boolean;
  /** Also `treecast publish` a successful build and scan the publish tree. */
  publish?: boolean;
  /** On exit 0: the write stayed inside the image. */
  inImage?: (b: Built, planted: Planted[]) => void;
}

const targetOf = (planted: Planted[], at: string) => {
  const p = planted.find((x) => x.at === at);
  if (!p) throw new Error(`no link planted at ${at}`);
  return p.target;
};

/** The commit holds the hostile link exactly as written (kept, never resolved on the host). */
const keptAsWritten = (commitPath: string, at: string) => (b: Built, planted: Planted[]) => {
  expect(b.ls.get(commitPath), `${commitPath} in the commit`).toEqual(expect.objectContaining({ type: 'l', target: targetOf(planted, at) }));
};

/** An emptied directory: either the link kept as written, or an empty directory in its place. */
const keptOrEmptied = (pairs: [string, string][]) => (b: Built, planted: Planted[]) => {
  for (const [commitPath, at] of pairs) {
    const e = b.ls.get(commitPath);
    expect(e, `${commitPath} in the commit`).toBeDefined();
    if (e!.type === 'l') expect(e!.target).toBe(targetOf(planted, at));
    else {
      expect(e!.type).toBe('d');
      expect([...b.ls.keys()].filter((p) => p.startsWith(`${commitPath}/`)), `${commitPath} is empty`).toEqual([]);
    }
  }
};

/** The diskless output published the image's own fixture kernel, not what the hostile links point at. */
const fixtureKernelPublished = (b: Built) => {
  const art = (type: string) => b.img.artifacts.find((a) => a.type === type)?.path;
  expect(art('kernel'), 'a kernel artifact').toBeDefined();
  expect(fs.readFileSync(art('kernel')!, 'utf8')).toBe(FIXTURE_KERNEL);
  expect(fs.readFileSync(art('initrd')!, 'utf8')).toBe(FIXTURE_INITRAMFS);
};

const HOME = '/usr/share/factory/var/home/app';

const FINAL: readonly Way[] = ['files', 'overlay', 'postprocess'];
const EARLY: readonly Way[] = ['files', 'overlay'];

const ATTACKS: Attack[] = [
  // --- finalize ----------------------------------------------------------
  {
    id: 'ssh-keys',
    step: 'finalize removes /etc/ssh/ssh_host_*key',
    links: (c) => [{ at: '/etc/ssh', to: `${c.nest}/ssh` }],
    ways: FINAL,
    inImage: keptAsWritten('/usr/etc/ssh', '/etc/ssh'),
  },
  {
    id: 'machine-id',
    step: 'finalize empties /etc/machine-id',
    links: (c) => [{ at: '/etc/machine-id', to: `${c.nest}/machine-id` }],
    ways: FINAL,
    inImage: (b, planted) => {
      // Either the link was replaced by the empty machine-id the image needs, or kept as written.
      const e = b.ls.get('/usr/etc/machine-id');
      expect(e, '/usr/etc/machine-id in the commit').toBeDefined();
      if (e!.type === 'f') expect(e!.size).toBe(0);
      else expect(e).toEqual(expect.objectContaining({ type: 'l', target: targetOf(planted, '/etc/machine-id') }));
    },
  },
  {
    id: 'dbus',
    step: 'finalize removes /var/lib/dbus/machine-id',
    links: (c) => [{ at: '/var/lib/dbus', to: c.nest }],
    ways: FINAL,
    inImage: keptAsWritten('/usr/share/factory/var/lib/dbus', '/var/lib/dbus'),
  },
  {
    id: 'dpkg-status',
    step: 'finalize reads the dpkg database (package list into the commit and MANIFEST.json)',
    links: (c) => [{ at: '/var/lib/dpkg/status', to: c.secret }],
    ways: FINAL,
    inImage: keptAsWritten('/usr/share/factory/var/lib/dpkg/status', '/var/lib/dpkg/status'),
  },
  {
    id: 'var',
    step: 'finalize moves /var into /usr/share/factory/var (and /root, /srv into /var)',
    links: (c) => [{ at: '/var', to: c.dir }],
    clear: '/var',
    ways: FINAL,
  },
  {
    id: 'factory',
    step: 'finalize creates /usr/share/factory/var and renames /var entries into it',
    links: (c) => [{ at: '/usr/share/factory', to: c.nest }],
    ways: FINAL,
  },
  {
    id: 'tmpfiles',
    step: 'finalize writes /usr/lib/tmpfiles.d/treecast-var.conf',
    links: (c) => [{ at: '/usr/lib/tmpfiles.d', to: c.nest }],
    ways: FINAL,
  },
  {
    id: 'emptied-dirs',
    step: 'finalize empties /boot (after moving kernels) and /sys',
    links: (c) => [
      { at: '/boot', to: c.nest },
      { at: '/sys', to: c.nest },
    ],
    ways: FINAL,
    inImage: keptOrEmptied([
      ['/boot', '/boot'],
      ['/sys', '/sys'],
    ]),
  },
  {
    id: 'roothome',
    step: 'finalize replaces /var/roothome by the image\'s /root',
    links: (c) => [{ at: '/var/roothome', to: c.nest }],
    ways: FINAL,
    inImage: (b) => {
      // The image's own /root (shellTree's .profile) ended up in the factory /var, not in the canary nest.
      expect(b.ls.get('/usr/share/factory/var/roothome/.profile')).toEqual(expect.objectContaining({ type: 'f', mode: 0o600 }));
    },
  },

  // --- users and groups ----------------------------------------------------
  {
    id: 'home',
    step: 'users creates /home/app (mkdir, /etc/skel copy, chown, chmod)',
    links: (c) => [{ at: '/home', to: c.nest }],
    ways: EARLY,
    extra: USERS,
    inImage: (b) => expect(b.cat('/usr/etc/passwd')).toContain('app:x:2000:2000::/home/app:/bin/sh'),
  },
  {
    id: 'homedir',
    step: 'users creates, chowns and chmods the home directory itself',
    links: (c) => [{ at: '/home/app', to: c.nest }],
    ways: EARLY,
    extra: USERS,
    inImage: (b) => expect(b.cat('/usr/etc/passwd')).toContain('app:x:2000:2000::/home/app:/bin/sh'),
  },
  {
    id: 'dot-ssh',
    step: 'users mkdirs, chowns and chmods ~/.ssh, writes ~/.ssh/authorized_keys',
    links: (c) => [{ at: '/home/app/.ssh', to: `${c.nest}/ssh` }],
    ways: EARLY,
    extra: USERS,
    inImage: (b, planted) => {
      const e = b.ls.get(`${HOME}/.ssh`);
      expect(e, `${HOME}/.ssh in the commit`).toBeDefined();
      if (e!.type === 'l') expect(e!.target).toBe(targetOf(planted, '/home/app/.ssh'));
      else expect(b.cat(`${HOME}/.ssh/authorized_keys`)).toBe(`${SSH_KEY}\n`);
    },
  },
  {
    id: 'authorized-keys',
    step: 'users writes, chowns and chmods ~/.ssh/authorized_keys',
    links: (c) => [{ at: '/home/app/.ssh/authorized_keys', to: c.secret }],
    ways: EARLY,
    extra: USERS,
    inImage: (b, planted) => {
      // Replaced by the real key file (like files[] replaces), or left as the link: never written through.
      const e = b.ls.get(`${HOME}/.ssh/authorized_keys`);
      expect(e, 'authorized_keys in the commit').toBeDefined();
      if (e!.type === 'l') expect(e!.target).toBe(targetOf(planted, '/home/app/.ssh/authorized_keys'));
      else expect(b.cat(`${HOME}/.ssh/authorized_keys`)).toBe(`${SSH_KEY}\n`);
    },
  },
  {
    id: 'skel',
    step: 'users copies /etc/skel into the new home and chowns the copy',
    links: (c) => [
      { at: '/etc/skel/x', to: c.secret },
      { at: '/etc/skel/d', to: c.nest },
    ],
    ways: EARLY,
    extra: USERS,
    inImage: (b, planted) => {
      // skel links are copied as links (verbatim), never as what they point at.
      expect(b.ls.get(`${HOME}/x`)).toEqual(expect.objectContaining({ type: 'l', target: targetOf(planted, '/etc/skel/x') }));
      expect(b.ls.get(`${HOME}/d`)).toEqual(expect.objectContaining({ type: 'l', target: targetOf(planted, '/etc/skel/d') }));
    },
  },
  {
    id: 'etc',
    step: 'users writes /etc/passwd, group, shadow, gshadow (and finalize /etc/machine-id)',
    links: (c) => [{ at: '/etc', to: c.nest }],
    clear: '/etc',
    ways: EARLY,
    extra: USERS,
  },

  // --- units ---------------------------------------------------------------
  {
    id: 'unit-dir',
    step: 'units: systemctl enable, mask links and default.target in /etc/systemd/system',
    links: (c) => [{ at: '/etc/systemd/system', to: c.nest }],
    ways: EARLY,
    extra: UNITS,
    inImage: keptAsWritten('/usr/etc/systemd/system', '/etc/systemd/system'),
  },
  {
    id: 'wants-dir',
    step: 'units: systemctl enable writes into multi-user.target.wants',
    links: (c) => [{ at: '/etc/systemd/system/multi-user.target.wants', to: c.nest }],
    ways: EARLY,
    extra: UNITS,
    inImage: keptAsWritten('/usr/etc/systemd/system/multi-user.target.wants', '/etc/systemd/system/multi-user.target.wants'),
  },
  {
    id: 'mask-links',
    step: 'units replaces the mask link and default.target',
    links: (c) => [
      { at: '/etc/systemd/system/noisy.timer', to: c.secret },
      { at: '/etc/systemd/system/default.target', to: c.secret },
    ],
    ways: EARLY,
    extra: UNITS,
    inImage: (b) => {
      // The step's own links replaced the hostile ones inside the image.
      expect(b.ls.get('/usr/etc/systemd/system/noisy.timer')).toEqual(expect.objectContaining({ type: 'l', target: '/dev/null' }));
      expect(b.ls.get('/usr/etc/systemd/system/default.target')).toEqual(expect.objectContaining({ type: 'l', target: '/usr/lib/systemd/system/multi-user.target' }));
    },
  },

  // --- remove-files (runs before overlays and files[]) ---------------------
  {
    id: 'remove-files',
    step: 'remove-files deletes what /usr/share/doc/** and /usr/share/man match',
    links: (c) => [
      { at: '/usr/share/doc', to: c.nest },
      { at: '/usr/share/man', to: `${c.nest}/ssh` },
    ],
    ways: ['base-tree', 'base-image'],
    removeFiles: ['/usr/share/doc/**', '/usr/share/man'],
    inImage: (b, planted) => {
      // doc/** matches only entries *below* the link (none inside the image); man matches the link itself.
      keptAsWritten('/usr/share/doc', '/usr/share/doc')(b, planted);
      expect(b.ls.has('/usr/share/man')).toBe(false);
    },
  },

  // --- outputs ---------------------------------------------------------------
  {
    id: 'kernel-links',
    step: 'emit findKernel + diskless copy vmlinuz/initramfs (published 0644)',
    links: (c) => [
      { at: '/usr/lib/modules/9.9.9-hostile/vmlinuz', to: c.secret },
      { at: '/usr/lib/modules/9.9.9-hostile/initramfs.img', to: c.secret },
    ],
    ways: FINAL,
    diskless: true,
    publish: true,
    inImage: fixtureKernelPublished,
  },
  {
    id: 'boot-kernel-links',
    step: 'finalize moves /boot/vmlinuz-* into /usr/lib/modules, diskless copies it',
    links: (c) => [
      { at: '/boot/vmlinuz-9.9.9-hostile', to: c.secret },
      { at: '/boot/initrd.img-9.9.9-hostile', to: c.secret },
    ],
    ways: FINAL,
    diskless: true,
    publish: true,
    inImage: fixtureKernelPublished,
  },
  {
    id: 'modules-dir',
    step: 'emit findKernel lists /usr/lib/modules (the canary nest has modules/9.9.9-canary)',
    links: (c) => [{ at: '/usr/lib/modules', to: `${c.nest}/modules` }],
    clear: '/usr/lib/modules',
    ways: FINAL,
    diskless: true,
    publish: true,
  },
  {
    id: 'usr',
    step: 'finalize /etc -> /usr/etc, factory /var, /usr/local link; emit /usr/etc -> /etc in the checkout',
    links: (c) => [{ at: '/usr', to: c.dir }],
    clear: '/usr',
    ways: FINAL,
  },
];

interface Case {
  title: string;
  attack: Attack;
  way: Way;
  form: Form;
  /** Image name (also names its overlay and base tree dirs). */
  name: string;
}

const short: Record<Way, string> = { files: 'f', overlay: 'o', postprocess: 'p', 'base-tree': 't', 'base-image': 'i' };

/**
 * Absolute links are planted every way the attack allows. How a relative link
 * is resolved does not depend on who planted it, so (to keep the file near
 * 80 builds) each attack gets its relative link one way: by postprocess when
 * that reaches the step (it is the last word before finalize and the
 * outputs), else by files[], else from the base tree.
 */
const relativeWay = (a: Attack): Way => (['postprocess', 'files', 'base-tree'] as const).find((w) => a.ways.includes(w)) ?? a.ways[0]!;

const CASES: Case[] = ATTACKS.flatMap((attack) =>
  attack.ways.flatMap((way) =>
    (way === relativeWay(attack) ? (['absolute', 'relative'] as const) : (['absolute'] as const)).map((form) => ({
      attack,
      way,
      form,
      name: `${attack.id}-${short[way]}-${form === 'absolute' ? 'abs' : 'rel'}`,
      title: `${attack.id} via ${way}, ${form} link: ${attack.step}`,
    })),
  ),
);

/** What beforeAll found for a case. */
interface State {
  canaries: Canaries;
  planted: Planted[];
  cacheDir: string;
  build: RunResult;
  img?: BuiltImage;
  publishDir?: string;
  publish?: RunResult;
  fx: Fixture;
}

/** The clean image the diskless cases derive from. */
const KBASE = 'kbase';

const q = JSON.stringify; // a JSON string is a valid YAML double-quoted scalar

function plant(c: Canaries, attack: Attack, form: Form): Planted[] {
  return attack.links(c).map(({ at, to }) => {
    const target = form === 'absolute' ? to : escapingRelative(to);
    assertAimsAtCanary(c, target);
    return { at, target };
  });
}

/** The shell line a hostile postprocess script plants a link with (shellTree has no `ln`: busybox has). */
function postprocessLine(p: Planted): string {
  if (p.at === '/usr') {
    // busybox lives in /usr: move it aside, then link from the moved copy.
    return `busybox mv /usr /usr.moved && /usr.moved/bin/busybox ln -s '${p.target}' /usr`;
  }
  return `rm -rf '${p.at}' && mkdir -p '${path.posix.dirname(p.at)}' && busybox ln -s '${p.target}' '${p.at}'`;
}

function outputsYaml(a: Attack): string {
  return ['outputs:', '  squashfs: { compression: gzip }', '  tarball: { compression: gzip }', ...(a.diskless ? ['  diskless: {}'] : []), ''].join('\n');
}

/** The repository files of one case: its manifest(s), overlay or base tree. */
function caseFiles(k: Case, planted: Planted[]): Record<string, FileSpec> {
  const a = k.attack;
  const files: Record<string, FileSpec> = {};
  const removeFiles = [...(a.removeFiles ?? []), ...(a.clear && (k.way === 'files' || k.way === 'overlay') ? [a.clear] : [])];
  const lines = [`name: ${k.name}`];
  if (k.way === 'base-tree') {
    Object.assign(files, shellTree(`trees/${k.name}`));
    for (const p of planted) files[`trees/${k.name}${p.at}`] = { symlink: p.target };
    lines.push(`base: { source: tree, path: trees/${k.name} }`);
  } else if (k.way === 'base-image') {
    const parent = `${k.name}-parent`;
    files[`images/${parent}.yaml`] = [
      `name: ${parent}`,
      'base: { source: tree, path: trees/base }',
      'automatic-version-prefix: "1"',
      'files:',
      ...planted.map((p) => `  - { path: ${q(p.at)}, symlink: ${q(p.target)} }`),
      'outputs: { ostree: {} }',
      '',
    ].join('\n');
    lines.push(`base: { source: image, image: ${parent} }`);
  } else {
    lines.push(a.diskless ? `base: { source: image, image: ${KBASE} }` : 'base: { source: tree, path: trees/base }');
  }
  lines.push('automatic-version-prefix: "1"');
  if (removeFiles.length) lines.push(`remove-files: [${removeFiles.map((r) => q(r)).join(', ')}]`);
  if (k.way === 'overlay') {
    for (const p of planted) files[`overlays/${k.name}${p.at}`] = { symlink: p.target };
    lines.push(`overlays: [overlays/${k.name}]`);
  }
  if (k.way === 'files') {
    lines.push('files:', ...planted.map((p) => `  - { path: ${q(p.at)}, symlink: ${q(p.target)} }`));
  }
  let text = lines.join('\n') + '\n' + (a.extra ?? '');
  if (k.way === 'postprocess') text += 'postprocess:\n' + planted.map((p) => `  - ${q(postprocessLine(p))}\n`).join('');
  files[`images/${k.name}.yaml`] = text + outputsYaml(a);
  return files;
}

describe('confinement: links planted in the image never lead a step or an output out of the image root', () => {
  /** One repository per attack: every CLI run loads all images of its repository, so repositories stay small. */
  const repos: Fixture[] = [];
  const allCanaries: Canaries[] = [];
  const state = new Map<string, State>();
  const st = (k: Case) => {
    const s = state.get(k.name);
    if (!s) throw new Error(`no build state for ${k.name} (beforeAll failed?)`);
    return s;
  };

  beforeAll(async () => {
    for (const tool of ['ostree', 'bwrap', 'systemctl', 'dpkg-query', 'git', 'mksquashfs', 'unsquashfs', 'tar', 'gzip', 'busybox', 'cp']) requireTool(tool);
    const groups = ATTACKS.map((attack) => {
      const files: Record<string, FileSpec> = {
        ...shellTree('trees/base'),
        // findKernel calls an image with this dracut module "dracut": the diskless output then writes vmlinuz + initrd.img.
        'trees/base/usr/lib/dracut/modules.d/90dmsquash-live/module-setup.sh': '#!/bin/sh\n# fixture: dracut-live is "installed"\n',
        '.gitignore': '.treecast/\npublic/\n',
      };
      if (attack.diskless) files[`images/${KBASE}.yaml`] = `name: ${KBASE}\nbase: { source: tree, path: trees/base }\nautomatic-version-prefix: "1"\noutputs: { ostree: {} }\n`;
      const cases = CASES.filter((k) => k.attack === attack).map((k) => {
        const c = makeCanaries();
        allCanaries.push(c);
        const planted = plant(c, k.attack, k.form); // throws before anything is written if a target left the canary dir
        Object.assign(files, caseFiles(k, planted));
        return { k, c, planted };
      });
      const fx = makeRepo({ prefix: `confinement-${attack.id}`, files });
      repos.push(fx);
      return { attack, fx, cases };
    });
    // Each build has its own cache (ostree repo, out dir), so builds of different attacks can overlap.
    await pool(groups, 3, async ({ attack, fx, cases }) => {
      let template: string | undefined;
      if (attack.diskless) {
        // kbase once per attack, copied into each case's cache (it is "up to date" there: same inputs).
        template = fx.newCacheDir();
        const r = await treecast(fx.dir, template, ['build', KBASE, '--json']);
        if (r.code !== 0) throw new Error(`building the clean base image ${KBASE} failed (exit ${r.code}):\n${r.stderr}`);
      }
      for (const { k, c, planted } of cases) {
        const cacheDir = fx.newCacheDir();
        if (template) sh('cp', ['-a', template, cacheDir]);
        const build = await treecast(fx.dir, cacheDir, ['build', k.name, '--json']);
        const s: State = { canaries: c, planted, cacheDir, build, fx };
        if (build.code === 0) s.img = (JSON.parse(build.stdout) as { images: BuiltImage[] }).images.find((i) => i.name === k.name);
        if (build.code === 0 && attack.publish) {
          s.publishDir = path.join(path.dirname(fx.dir), `public-${k.name}`);
          s.publish = await treecast(fx.dir, cacheDir, ['publish', k.name, '--dir', s.publishDir, '--json']);
        }
        state.set(k.name, s);
      }
    });
  }, 1_500_000);

  afterAll(() => {
    for (const c of allCanaries) c.cleanup();
    for (const fx of repos) fx.cleanup();
  });

  it.each(CASES)('canaries untouched: $title', (k) => {
    st(k).canaries.assertUnchanged();
  });

  it.each(CASES)('exit 0 with the write inside the image, or exit 1 naming the path: $title', (k) => {
    const s = st(k);
    const { code, stderr } = s.build;
    expect(stderr, 'no stack trace or internal error').not.toMatch(STACK_TRACE);
    expect(code, `treecast build ${k.name} exits 0 or 1 (3 is an internal bug):\n${stderr}`).toBeOneOf([0, 1]);
    if (code === 1) {
      const named = s.planted.map((p) => p.at).filter((at) => stderr.includes(at));
      expect(named, `the refusal names the planted path:\n${stderr}`).not.toEqual([]);
      return;
    }
    expect(s.img, 'build --json lists the image').toBeDefined();
    if (k.attack.publish) expect(s.publish?.code, `treecast publish ${k.name}:\n${s.publish?.stderr}`).toBe(0);
    const repo = path.join(s.cacheDir, 'repo');
    const built: Built = { img: s.img!, ls: ostreeLs(repo, s.img!.commit), cat: (p) => ostreeCat(repo, s.img!.commit, p) };
    // Every commit finalize made has its tmpfiles.d file (wherever a confined write put it): the commit is a real image.
    expect([...built.ls.keys()].some((p) => p.endsWith('/treecast-var.conf')), 'the commit is a finalized image').toBe(true);
    k.attack.inImage?.(built, s.planted);
  });

  it.each(CASES)('no canary bytes in artifacts, publish tree or CLI output: $title', (k) => {
    const s = st(k);
    const scratch = fs.mkdtempSync(path.join(path.dirname(s.fx.dir), 'scan-'));
    try {
      const hits = [...canaryBytesInOutput(s.build), ...(s.publish ? canaryBytesInOutput(s.publish) : [])];
      // Every out dir of this case's cache (a refused build leaves none; a base image's parent has its own).
      const out = path.join(s.cacheDir, 'out');
      if (fs.existsSync(out)) hits.push(...canaryBytesIn(out, scratch));
      if (s.publishDir && fs.existsSync(s.publishDir)) hits.push(...canaryBytesIn(s.publishDir, scratch));
      if (s.build.code === 0) {
        // A successful build must really have produced the artifacts that were scanned.
        expect(s.img!.artifacts.map((a) => a.type).sort()).toEqual(k.attack.diskless ? ['initrd', 'ipxe', 'kernel', 'squashfs', 'tarball'] : ['squashfs', 'tarball']);
      }
      expect(hits).toEqual([]);
    } finally {
      fs.rmSync(scratch, { recursive: true, force: true });
    }
  });
});
