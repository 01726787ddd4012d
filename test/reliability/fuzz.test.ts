/**
 * Parser fuzz (issue #12, "Prove it"): 10 000 generated manifests through the
 * loader and validator `treecast validate` uses (validateAll, compiler/images.ts).
 * Manifests arrive in pull requests and treecast runs as root, so for ANY input:
 *   - the call returns: nothing is thrown but a UserError (which the CLI maps to exit 1);
 *   - every diagnostic is located (file, line >= 1 within the file, col >= 1 within
 *     the line), has a message, and shows no JS stack, "undefined" or "[object Object]";
 *   - each input finishes within TIME_BOUND_MS;
 *   - Object.prototype is untouched, and a valid manifest holds only plain objects.
 * Two generators: (a) schema-shaped objects with hostile values dumped by js-yaml,
 * (b) raw byte mutations of the example manifests in images/.
 * A smaller sample goes through the real CLI too (exit 0 or 1, no stack trace).
 *
 * The seed is fixed (TREECAST_FUZZ_SEED overrides it) so CI is reproducible; a
 * failure prints the seed and the shrunk counterexample.
 */
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';
import fc from 'fast-check';
import yaml from 'js-yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, makeTempDir, PROJECT_ROOT, removeDir, STACK_TRACE } from '../helpers/cli.js';
import { spawn } from 'node:child_process';

const SEED = Number(process.env.TREECAST_FUZZ_SEED ?? 1212);
const RUNS = { structured: 6000, mutated: 4000 }; // 10 000 in all
const CLI_SAMPLE = 50;
const CLI_BATCH = 5; // manifests per CLI process: one startup (~2 s on a loaded 2-core box) per 5 inputs keeps the file near a minute
/** The bound each input must meet (validation time, measured inside the worker). */
const TIME_BOUND_MS = 2000;
/** A synchronous endless loop cannot be interrupted in-process: the worker running it is terminated after this. */
const HANG_KILL_MS = 10_000;

// ---------------------------------------------------------------------------
// The validator runs in a worker thread: a hang in the parser (a synchronous
// loop) would otherwise freeze the test runner itself, with no report. The
// worker gets the repository and file names, the test thread writes the
// files and judges the results.
// ---------------------------------------------------------------------------

const require = createRequire(import.meta.url);
const WORKER_SOURCE = `
import { parentPort, workerData } from 'node:worker_threads';
const { register } = await import(workerData.tsx);
register();
const { validateAll } = await import(workerData.images);
const { openRepo } = await import(workerData.repo);
const { UserError } = await import(workerData.diagnostics);
const protoKeys = () => Object.getOwnPropertyNames(Object.prototype).sort().join(',');
const cleanProto = protoKeys();
const RESERVED = new Set(['__proto__', 'constructor', 'prototype']);
// A valid manifest must be made of plain objects and arrays only: anything else means a key reached the object model.
function protoProblems(v, at, out) {
  if (typeof v !== 'object' || v === null) return out;
  const proto = Object.getPrototypeOf(v);
  if (proto !== Object.prototype && proto !== Array.prototype) out.push(at + ': prototype is not Object.prototype');
  for (const k of Object.getOwnPropertyNames(v)) {
    if (RESERVED.has(k)) out.push(at + ': own key ' + k);
    if (k !== 'length' || !Array.isArray(v)) protoProblems(v[k], at + '.' + k, out);
  }
  return out;
}
const loc = (l) => l && { file: l.file, line: l.line, col: l.col, via: l.via && l.via.map(loc) };
parentPort.on('message', ({ id, root, files }) => {
  let out;
  const t = performance.now();
  try {
    const repo = openRepo({ repo: root });
    const r = validateAll(repo, files);
    out = {
      diagnostics: r.diagnostics.map((d) => ({ loc: loc(d.loc), path: d.path, message: d.message, hint: d.hint })),
      valid: r.images.map((i) => i.manifest.name),
      manifestProblems: r.images.flatMap((i) => protoProblems(i.manifest, i.shown, [])),
    };
  } catch (e) {
    out = { thrown: { userError: e instanceof UserError, exitCode: e && e.exitCode, name: e && e.name, message: String(e && e.message), stack: String(e && e.stack) } };
  }
  const ms = performance.now() - t;
  out.polluted = ({}).polluted !== undefined || protoKeys() !== cleanProto;
  parentPort.postMessage({ id, ms, ...out });
});
parentPort.postMessage({ ready: true });
`;

interface Loc {
  file: string;
  line: number;
  col: number;
  via?: Loc[];
}
interface Outcome {
  id: number;
  ms: number;
  polluted: boolean;
  diagnostics?: { loc?: Loc; path?: string; message: string; hint?: string }[];
  valid?: string[];
  manifestProblems?: string[];
  thrown?: { userError: boolean; exitCode?: number; name: string; message: string; stack: string };
}

class ValidatorWorker {
  private worker: Worker | undefined;
  private ready: Promise<void> | undefined;
  private next = 0;
  private pending = new Map<number, (o: Outcome) => void>();

  private start(): Promise<void> {
    const w = new Worker(new URL('data:text/javascript,' + encodeURIComponent(WORKER_SOURCE)), {
      workerData: {
        tsx: pathToFileURL(require.resolve('tsx/esm/api')).href,
        images: pathToFileURL(path.join(PROJECT_ROOT, 'compiler/images.ts')).href,
        repo: pathToFileURL(path.join(PROJECT_ROOT, 'compiler/repo.ts')).href,
        diagnostics: pathToFileURL(path.join(PROJECT_ROOT, 'compiler/diagnostics.ts')).href,
      },
    });
    this.worker = w;
    return new Promise((resolve, reject) => {
      w.on('message', (m: Outcome & { ready?: boolean }) => {
        if (m.ready) return resolve();
        this.pending.get(m.id)?.(m);
        this.pending.delete(m.id);
      });
      w.on('error', reject);
    });
  }

  /** Validate `files` in `root`; undefined when the worker had to be killed (a hang). */
  async run(root: string, files: string[]): Promise<Outcome | undefined> {
    this.ready ??= this.start();
    await this.ready;
    const id = this.next++;
    let timer: NodeJS.Timeout | undefined;
    const result = await Promise.race([
      new Promise<Outcome>((resolve) => {
        this.pending.set(id, resolve);
        this.worker!.postMessage({ id, root, files });
      }),
      new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), HANG_KILL_MS))),
    ]);
    clearTimeout(timer);
    if (!result) {
      // Hung: kill it, the next input gets a fresh worker.
      this.pending.delete(id);
      await this.stop();
    }
    return result;
  }

  async stop(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    this.ready = undefined;
    await w?.terminate();
  }
}

// ---------------------------------------------------------------------------
// The temp repository: the example images with their overlays and files, plus
// the things the input policy must refuse, so that path checks both pass and fail.
// ---------------------------------------------------------------------------

const EXAMPLES = ['images/edge-host.yaml', 'images/diskless-node.yaml', 'images/tiny.yaml', 'images/common/debian-base.yaml'];
const ORIGINAL = new Map(EXAMPLES.map((f) => [f, fs.readFileSync(path.join(PROJECT_ROOT, f))]));

function makeFuzzRepo(prefix: string): string {
  const dir = makeTempDir(prefix);
  for (const d of ['overlays', 'files']) fs.cpSync(path.join(PROJECT_ROOT, d), path.join(dir, d), { recursive: true, verbatimSymlinks: true });
  for (const [f, bytes] of ORIGINAL) {
    fs.mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
    fs.writeFileSync(path.join(dir, f), bytes);
  }
  const put = (rel: string, text: string) => {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), text);
  };
  put('scripts/harden.sh', '#!/bin/sh\ntrue\n');
  put('images/common/extra.yaml', 'packages: [curl]\nmetadata: { team: fuzz }\n');
  put('images/common/cycle.yaml', 'include: [cycle.yaml]\n');
  put('.git/config', '[core]\n'); // the CI token's home: never an input
  put('.treecast/gnupg/secring.gpg', 'secret\n');
  put('public/index.json', '{}\n');
  put('overlays/with-git/.git/HEAD', 'ref: refs/heads/main\n'); // a directory input containing a .git
  put('trees/base/etc/hostname', 'fuzz\n');
  fs.symlinkSync('/etc', path.join(dir, 'outlink')); // leaves the repository
  fs.symlinkSync('overlays/motd', path.join(dir, 'inlink')); // stays inside: fine
  fs.symlinkSync('files/sssd.conf', path.join(dir, 'inlink-file'));
  fs.symlinkSync('loop', path.join(dir, 'loop')); // a symlink loop
  fs.symlinkSync('.git', path.join(dir, 'gitlink')); // .git through a symlink
  return dir;
}

// ---------------------------------------------------------------------------
// Generator (a): objects shaped like schemas/image.schema.json, any value hostile.
// ---------------------------------------------------------------------------

const GOOD_DIRS = ['overlays/motd', 'overlays/ssh-hardening', 'overlays/tiny-rootfs', 'inlink', 'trees/base'];
const GOOD_FILES = ['files/sssd.conf', 'scripts/harden.sh', 'inlink-file'];
const GOOD_INCLUDES = ['common/debian-base.yaml', 'common/extra.yaml'];
const HOSTILE_PATHS = [
  '..', '../..', '../../etc/passwd', '/etc/passwd', '/', '.', './', '', ' ', '.git', '.git/config', '.GIT/config', 'x/.git/../files/sssd.conf',
  'overlays/../.git', '.treecast', '.treecast/gnupg', 'public', 'public/index.json', 'overlays/with-git', 'outlink', 'outlink/passwd', 'loop',
  'loop/x', 'gitlink', 'gitlink/config', 'files/sssd.conf/x', 'files', 'images', 'fuzz.yaml', 'common/cycle.yaml', '../edge-host.yaml',
  '../tiny.yaml', '../../images/common/debian-base.yaml', '/proc/self/environ', '/dev/zero', 'a\0b', 'files/sssd.conf\0', '\0',
  'x'.repeat(300), Array.from({ length: 300 }, () => 'd').join('/'), 'overlays/motd/'.repeat(40), '~/x', 'C:\\Windows', '\\\\server\\share',
];
const SPECIAL_SCALARS = ['~', 'null', 'Null', 'NULL', 'yes', 'no', 'on', 'off', 'y', 'n', 'true', 'False', '0o644', '0644', '0x1F', '1e3', '-0', '.inf', '-.inf', '.nan', '.NaN', '<<', '=', '!!str', '*a', '&a', '- x', ': ', '#', '---', '...', '@x', '`x`', '%TAG', '? x', '|', '>-'];
const NASTY = ['\0', '\u0001', '\u202e', '\uFEFF', '\u2028', '\u0085', '\r', '\r\n', '\t', '"', "'", '\\', '日本語', '🚀'.repeat(10), 'é', '\uD800', 'ǅ', 'İ', '\u0000\u0000'];

const hostileString: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...HOSTILE_PATHS, ...SPECIAL_SCALARS, ...NASTY) },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme', maxLength: 24 }) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 24 }) },
  { weight: 1, arbitrary: fc.array(fc.constantFrom('..', '.git', 'overlays', 'motd', 'outlink', '', '.', '\0', 'é'), { minLength: 1, maxLength: 6 }).map((p) => p.join('/')) },
  // Longer than a file name may be (255) and than a path may be (4096): ENAMETOOLONG. Huge values: `structured` below.
  { weight: 1, arbitrary: fc.integer({ min: 256, max: 5_000 }).map((n) => 'x'.repeat(n)) },
);
const hostileScalar: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 5, arbitrary: hostileString },
  { weight: 1, arbitrary: fc.integer() },
  { weight: 1, arbitrary: fc.double() }, // NaN, +-Infinity, -0 included
  { weight: 1, arbitrary: fc.boolean() },
  { weight: 1, arbitrary: fc.constant(null) },
);
const RESERVED = ['__proto__', 'constructor', 'prototype'];
// Reserved keys stop a manifest at the parser: common enough to be tried often, rare enough to let the rest through.
const hostileKey = fc.oneof({ weight: 1, arbitrary: fc.constantFrom(...RESERVED) }, { weight: 4, arbitrary: fc.constantFrom('polluted', 'toString', 'hasOwnProperty', 'name', 'base', 'files', '<<', '$schema', 'pakages') }, { weight: 4, arbitrary: hostileString });

/** An object with exactly these own keys: `obj[k] = v` would set the prototype for "__proto__". */
function objectOf(entries: (readonly [unknown, unknown])[]): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (const [k, v] of entries) Object.defineProperty(o, String(k), { value: v, enumerable: true, writable: true, configurable: true });
  return o;
}
const anyValue: fc.Arbitrary<unknown> = fc.letrec<{ v: unknown }>((tie) => ({
  v: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    hostileScalar,
    fc.array(tie('v'), { maxLength: 4 }),
    fc.array(fc.tuple(hostileKey, tie('v')), { maxLength: 4 }).map(objectOf),
  ),
})).v;
/**
 * The manifest object. `hostile`: any value may be anything (anyValue), and
 * near misses are mixed into the valid choices; calm: only valid choices, so a
 * share of the manifests pass and the valid path (and its pollution check) runs.
 */
const oneOf = <T>(...values: T[]) => fc.constantFrom(...values);
const list = <T>(item: fc.Arbitrary<T>, maxLength = 4) => fc.array(item, { maxLength });
/** A choice that the calm generator never makes. */
const rarely = <T>(hostile: boolean, usual: fc.Arbitrary<T>, weight: number, odd: fc.Arbitrary<T>): fc.Arbitrary<T> => (hostile ? fc.oneof({ weight, arbitrary: usual }, { weight: 1, arbitrary: odd }) : usual);

function manifestObjectOf(hostile: boolean) {
  /**
   * Mostly a plausible value, sometimes anything at all: with ~15 keys per manifest,
   * 1 in 12 per value leaves about a third of the manifests past the schema, so
   * the semantic rules and the input policy are reached too.
   */
  const or = <T>(good: fc.Arbitrary<T>): fc.Arbitrary<unknown> => (hostile ? fc.oneof({ weight: 12, arbitrary: good }, { weight: 1, arbitrary: anyValue }) : good);
  // Paths the policy accepts and paths it refuses (plus arbitrary strings): checks run both ways.
  const hostilePath = fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...HOSTILE_PATHS) }, { weight: 1, arbitrary: hostileString });
  const dirPath = rarely<string>(hostile, oneOf(...GOOD_DIRS), 2, hostilePath);
  const filePath = rarely<string>(hostile, oneOf(...GOOD_FILES), 2, hostilePath);
  const includePath = rarely<string>(hostile, oneOf(...GOOD_INCLUDES), 2, hostilePath);
  /** A valid value mostly, a near miss (wrong for the schema or the semantic rules) now and then. */
  const pick = <T>(valid: T[], wrong: unknown[] = []): fc.Arbitrary<unknown> =>
    wrong.length && hostile ? fc.oneof({ weight: 10, arbitrary: fc.constantFrom(...valid) }, { weight: 1, arbitrary: fc.constantFrom(...wrong) }) : fc.constantFrom(...valid);
  const owner = pick<unknown>(['root', 0, 1000, 'app'], [-1, 'Root', 4294967295, 1.5]);
  const modeValue = pick(['0644', '0600', '4755', '0755'], ['0999', '07777', '17777', 644, 0o644, '644', '']);
  // Disjoint lists: a unit both enabled and masked is a semantic error the calm generator should not make.
  const unitName = (valid: string[]) => pick(valid, ['ssh', '../x.service', 'a b.service', 'ssh.service']);
  const rec = <T>(shape: { [K in keyof T]: fc.Arbitrary<T[K]> }, requiredKeys: (keyof T)[] = []) => fc.record(shape, { requiredKeys: requiredKeys as never });

  const base = fc.oneof(
    rec({ source: fc.constant('debian'), suite: or(pick(['bookworm', 'trixie'])), variant: or(pick(['minbase', 'standard'], ['weird'])), components: or(list(pick(['main', 'contrib']))), mirror: or(pick(['http://deb.debian.org/debian', 'file:///srv'], ['ftp://x'])) }, ['source']),
    // A tree base conflicts with packages (and includes of Debian settings): the calm generator keeps to the other two.
  ...(hostile ? [rec({ source: fc.constant('tree'), path: or(dirPath) }, ['source', 'path'])] : []),
    rec({ source: fc.constant('image'), image: or(pick(['edge-host', 'tiny', 'diskless-node'], ['fuzz', 'nope'])) }, ['source', 'image']),
    // Keys of the wrong base source, or none.
    ...(hostile ? [rec({ source: or(pick(['debian', 'tree', 'image'], ['debain'])), path: or(dirPath), suite: or(pick(['bookworm'])), image: pick(['tiny']) })] : []),
  );
  /** A files[] entry has exactly one of source, content and symlink (sometimes not). */
  const fileEntry = fc
    .record({
      path: or(pick(['/etc/motd', '/etc/x', '/usr/bin/vi', '/etc/tiny/y'], ['/etc/../../x', '/', 'etc/x', '/etc//x', '/etc/x/', '/etc/./x'])),
      what: rarely<string | string[]>(hostile, oneOf('source', 'content', 'symlink'), 10, fc.subarray(['source', 'content', 'symlink'])),
      source: or(filePath),
      content: or(fc.string({ unit: 'grapheme', maxLength: 40 })),
      symlink: or(pick(['/usr/bin/vim', '../x'], [''])),
      mode: fc.option(or(modeValue)),
      owner: fc.option(or(owner)),
      group: fc.option(or(owner)),
    })
    .map(({ path, what, source, content, symlink, mode: modeIn, owner, group }) => {
    let mode = modeIn;
      const keep = new Set(Array.isArray(what) ? what : [what]);
    if (!hostile && what === 'symlink') mode = null; // a symlink has no mode: a semantic error, for the hostile generator only
      const entries: [string, unknown][] = [['path', path], ['source', source], ['content', content], ['symlink', symlink], ['mode', mode], ['owner', owner], ['group', group]];
      return objectOf(entries.filter(([k, v]) => k === 'path' || keep.has(k) || (!['source', 'content', 'symlink'].includes(k) && v !== null)));
    });
  const user = rec(
    { name: or(pick(['admin', 'app', 'ops'], ['root', 'Bad'])), uid: or(pick([1000, 2000, 3000], [0, -1, 65534, 1000.5])), group: or(pick(['sudo', 'adm'], ['nope', 'operators'])), groups: or(list(pick(['sudo', 'adm', 'users'], ['nope', 'operators']))), gecos: or(pick(['x'], ['a:b', 'a\nb'])), home: or(pick(['/home/x'], ['x'])), shell: or(pick(['/bin/sh'], ['sh'])), 'password-hash': or(pick(['!', '$6$x'])), 'ssh-authorized-keys': or(list(pick(['ssh-ed25519 AAAA x'], ['a\nb', '']))) },
    ['name'],
  );
  return rec(
    {
      name: or(pick(['fuzz'], ['edge-host', 'tiny', 'Fuzz', 'a'.repeat(65)])),
      ref: or(pick(['acme/fuzz/x86_64/stable', 'fuzz/x86_64/stable'], ['acme/edge-host/x86_64/stable', '/bad//ref', 'a/../b'])),
      include: or(fc.oneof(includePath, list(includePath, 3))),
      'automatic-version-prefix': or(pick<unknown>(['2026.11', '1'], [2026.11, '-x'])),
      base: or(base),
      // A kernel first: diskless and bootable outputs need one.
    packages: or(list(or(pick(['dracut', 'openssh-server'], ['Bad Pkg']))).map((p) => ['linux-image-amd64', ...p])),
      'remove-files': or(list(or(pick(['/usr/share/doc/**'], ['relative/**'])))),
      overlays: or(list(or(dirPath))),
      files: or(list(fileEntry)),
      groups: or(list(rec({ name: or(pick(['operators', 'app', 'wheel2'], ['sudo', 'Bad'])), gid: or(pick([1500, 2500], [-1, 70000])) }, ['name']))),
      users: or(list(user)),
      units: or(rec({ enable: or(list(or(unitName(['ssh.service', 'y.socket'])), 2)), disable: or(list(or(unitName(['apt-daily.timer'])), 1)), mask: or(list(or(unitName(['x.target'])), 1)) })),
      'default-target': or(pick(['multi-user.target'], ['graphical', 'x.service'])),
      'kernel-args': or(list(or(pick(['console=ttyS0', 'quiet'], ['a b'])))),
      postprocess: or(list(or(pick(['true', 'echo $(id)'], [''])))),
      'postprocess-script': or(filePath),
      'postprocess-timeout': or(pick<unknown>([600, 1], [0, 86401, 1.5, '600'])),
      metadata: or(fc.array(fc.tuple(fc.oneof({ weight: 5, arbitrary: pick(['owner', 'team'], ['cost center', '_x']) }, { weight: 1, arbitrary: hostileKey }), hostileScalar), { maxLength: 3 }).map(objectOf)),
      streams: or(fc.array(fc.tuple(pick(['stable', 'testing'], ['Bad']), rec({ version: or(pick(['2026.11.1'], [1.0])), ref: or(pick(['acme/fuzz/x86_64/testing'])) })), { maxLength: 2 }).map(objectOf)),
      outputs: or(
        rec({
          ostree: or(rec({ bootable: or(fc.boolean()) })),
          squashfs: or(rec({ compression: or(pick(['zstd', 'xz'], ['brotli'])), level: or(pick([1, 22], [0, 23])) })),
          tarball: or(rec({ compression: or(pick(['gzip', 'none'], ['bz2'])) })),
          erofs: or(rec({ compression: or(pick(['lz4', 'none'])) })),
          diskless: or(rec({ 'kernel-args': or(list(pick(['panic=10'], ['a b']))) })),
        }),
      ),
    },
    // name and base are required: without them every manifest stops at the schema (missing keys: test/validate.test.ts).
    ['name', 'base'],
  );
}
const manifestObject = fc.oneof({ weight: 3, arbitrary: manifestObjectOf(true) }, { weight: 1, arbitrary: manifestObjectOf(false) });
/** Extra top-level entries: reserved keys (with a "polluted" sentinel under them), typos, anything. */
const extraEntries = fc.oneof(
  { weight: 3, arbitrary: fc.constant([]) },
  { weight: 1, arbitrary: fc.array(fc.oneof(fc.tuple(oneOf(...RESERVED), fc.constant<unknown>({ polluted: 'yes' })), fc.tuple(hostileKey, anyValue)), { minLength: 1, maxLength: 2 }) },
);
const dumpOptions = fc.record({
  indent: fc.integer({ min: 1, max: 6 }),
  flowLevel: fc.integer({ min: -1, max: 3 }),
  lineWidth: oneOf(-1, 20, 80),
  forceQuotes: fc.boolean(),
  quotingType: oneOf<"'" | '"'>("'", '"'),
  noCompatMode: fc.boolean(),
  condenseFlow: fc.oneof({ weight: 5, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
});
const structured = fc
  .record({
    m: manifestObject,
    extra: extraEntries,
    opts: dumpOptions,
    prefix: oneOf('', '---\n', '# yaml-language-server: $schema=../schemas/image.schema.json\n', '\uFEFF', '%YAML 1.2\n---\n'),
    // Now and then a huge value, up to past the 1 MiB manifest limit: rare, it is most of a run's cost.
    huge: fc.oneof({ weight: 150, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 50_000, max: 1_200_000 }) }),
  })
  .map(({ m, extra, opts, prefix, huge }) => {
    const obj = objectOf([...Object.entries(m), ...extra]);
    return prefix + yaml.dump(obj, { ...opts, skipInvalid: true }) + (huge ? `huge-value: ${'x'.repeat(huge)}\n` : '');
  });

// ---------------------------------------------------------------------------
// Generator (b): byte-level mutations of the example manifests.
// ---------------------------------------------------------------------------

const SNIPPETS = [
  ':', '- ', '[', ']', '{', '}', ',', '&', '*', '!', '|', '>', '#', '"', "'", '%', '@', '`', '?', '\t', '\n', ' ', '\r', '\0', '\uFEFF', '\u2028', '\u0085', 'é', '🚀',
  '---\n', '...\n', '--- |\n', '%YAML 1.2\n---\n', '%YAML 1.1\n', '%TAG ! tag:x,2000:\n', '---\n---\n', '--- !!map\n',
  'anchors: &a {x: [1, 2]}\nrefs: [*a, *a]\n', '<<: *nope\n', 'base: &b { source: debian }\nother: *b\n', '<<: {name: merged}\n', '<<: [*a, *a]\n', '*no_such_alias\n', '&a &b x\n', 'x: &a\n  y: *a\n',
  'packages: [a, {b: [c\n', 'files:\n- {path: /x, content: |\n    hi\n  }\n', '{a: b}: c\n', '? [a, b]\n: v\n', '? complex\n: key\n',
  '!!binary aGk=', '!!timestamp 2001-12-14', '!!js/function "x"', '!!js/regexp /x/', '!!set {a, b}', '!!omap [a: 1]', '!foo x', '!!int "12"', '!!float .inf', '!<tag:yaml.org,2002:str> x', '!!python/object:os.system x',
  '__proto__: {polluted: yes}\n', 'constructor: {prototype: {polluted: yes}}\n', '"__proto__": x\n', 'prototype: ~\n', 'name: ~\n', 'name: yes\n', 'mode: 0o644', 'mode: .inf', ' 0644', ' ~', ' yes',
  'include: [../../../etc/passwd]\n', 'include: ../edge-host.yaml\n', 'include: .git/config\n', 'overlays: [outlink, ., .git, overlays/with-git]\n', 'include: [common/cycle.yaml]\n',
];
const INVALID_UTF8 = [[0xff], [0xfe], [0xc3], [0xed, 0xa0, 0x80], [0xc0, 0xaf], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xe2, 0x82], [0xf4, 0x90, 0x80, 0x80], [0x80]];

type Mutation =
  | { op: 'insert'; at: number; text: string }
  | { op: 'delete'; at: number; len: number }
  | { op: 'dupChars'; at: number; len: number; times: number }
  | { op: 'dupLine' | 'delLine'; line: number }
  | { op: 'swapLines'; line: number; other: number }
  | { op: 'indent'; line: number; prefix: string }
  | { op: 'nest'; at: number; depth: number; style: 'flow-seq' | 'flow-map' | 'block-map' | 'block-seq' | 'unclosed' }
  | { op: 'badUtf8'; at: number; bytes: number[] }
  | { op: 'lineEnds'; style: 'crlf' | 'cr' | 'one-cr'; line: number }
  | { op: 'longLine'; at: number; len: number }
  | { op: 'aliasBomb'; levels: number; width: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant('insert' as const), at: fc.nat(), text: fc.oneof({ weight: 3, arbitrary: oneOf(...SNIPPETS) }, { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 6 }) }) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('delete' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 40 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('dupChars' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 30 }), times: fc.integer({ min: 1, max: 5 }) }) },
  { weight: 2, arbitrary: fc.record({ op: oneOf('dupLine' as const, 'delLine' as const), line: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('swapLines' as const), line: fc.nat(), other: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('indent' as const), line: fc.nat(), prefix: oneOf(' ', '  ', '    ', '\t', ' \t', '- ', '  - ', '? ') }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('nest' as const), at: fc.nat(), depth: fc.integer({ min: 1, max: 400 }), style: oneOf('flow-seq' as const, 'flow-map' as const, 'block-map' as const, 'block-seq' as const, 'unclosed' as const) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('badUtf8' as const), at: fc.nat(), bytes: oneOf(...INVALID_UTF8) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('lineEnds' as const), style: oneOf('crlf' as const, 'cr' as const, 'one-cr' as const), line: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('longLine' as const), at: fc.nat(), len: fc.integer({ min: 1000, max: 200_000 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('aliasBomb' as const), levels: fc.integer({ min: 1, max: 9 }), width: fc.integer({ min: 2, max: 9 }) }) },
);

const NL = 0x0a;
function splitLines(b: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let start = 0;
  for (let i = b.indexOf(NL); i !== -1; i = b.indexOf(NL, i + 1)) {
    out.push(b.subarray(start, i + 1));
    start = i + 1;
  }
  if (start < b.length) out.push(b.subarray(start));
  return out;
}
function insertAt(b: Buffer, at: number, add: Buffer): Buffer {
  const p = b.length ? at % (b.length + 1) : 0;
  return Buffer.concat([b.subarray(0, p), add, b.subarray(p)]);
}
function nestText(depth: number, style: Extract<Mutation, { op: 'nest' }>['style']): string {
  switch (style) {
    case 'flow-seq':
      return 'deep: ' + '['.repeat(depth) + ']'.repeat(depth) + '\n';
    case 'flow-map':
      return 'deep: ' + '{a: '.repeat(depth) + 'x' + '}'.repeat(depth) + '\n';
    case 'block-map':
      return Array.from({ length: depth }, (_, i) => ' '.repeat(i) + 'a:').join('\n') + ' x\n';
    case 'block-seq':
      return 'deep:\n' + Array.from({ length: depth }, (_, i) => ' '.repeat(i) + '- ').join('\n') + 'x\n';
    case 'unclosed':
      return 'deep: ' + '[{'.repeat(depth) + '\n';
  }
}
function applyMutation(b: Buffer, m: Mutation): Buffer {
  const lines = () => splitLines(b);
  const pick = (n: number, len: number) => (len ? n % len : 0);
  switch (m.op) {
    case 'insert':
      return insertAt(b, m.at, Buffer.from(m.text, 'utf8'));
    case 'delete': {
      const p = pick(m.at, b.length);
      return Buffer.concat([b.subarray(0, p), b.subarray(p + m.len)]);
    }
    case 'dupChars': {
      const p = pick(m.at, b.length);
      const chunk = b.subarray(p, p + m.len);
      return Buffer.concat([b.subarray(0, p), ...Array.from({ length: m.times + 1 }, () => chunk), b.subarray(p + m.len)]);
    }
    case 'dupLine':
    case 'delLine': {
      const ls = lines();
      const i = pick(m.line, ls.length);
      if (m.op === 'dupLine') ls.splice(i, 0, ls[i] ?? Buffer.alloc(0));
      else ls.splice(i, 1);
      return Buffer.concat(ls);
    }
    case 'swapLines': {
      const ls = lines();
      if (ls.length === 0) return b; // earlier mutations may have deleted every line
      const i = pick(m.line, ls.length);
      const j = pick(m.other, ls.length);
      [ls[i], ls[j]] = [ls[j]!, ls[i]!];
      return Buffer.concat(ls);
    }
    case 'indent': {
      const ls = lines();
      const i = pick(m.line, ls.length);
      ls[i] = Buffer.concat([Buffer.from(m.prefix), ls[i] ?? Buffer.alloc(0)]);
      return Buffer.concat(ls);
    }
    case 'nest': {
      // At a line start, where a key is expected.
      const ls = lines();
      ls.splice(pick(m.at, ls.length + 1), 0, Buffer.from(nestText(m.depth, m.style)));
      return Buffer.concat(ls);
    }
    case 'badUtf8':
      return insertAt(b, m.at, Buffer.from(m.bytes));
    case 'lineEnds': {
      if (m.style === 'crlf') return Buffer.from(b.toString('latin1').replace(/\n/g, '\r\n'), 'latin1');
      if (m.style === 'cr') return Buffer.from(b.toString('latin1').replace(/\n/g, '\r'), 'latin1');
      const ls = lines();
      const i = pick(m.line, ls.length);
      const l = ls[i];
      if (l?.length && l[l.length - 1] === NL) ls[i] = Buffer.concat([l.subarray(0, -1), Buffer.from('\r')]);
      return Buffer.concat(ls);
    }
    case 'longLine':
      return insertAt(b, m.at, Buffer.from('x'.repeat(m.len)));
    case 'aliasBomb': {
      const defs = [`b0: &b0 [${Array(m.width).fill('x').join(', ')}]`];
      for (let l = 1; l <= m.levels; l++) defs.push(`b${l}: &b${l} [${Array(m.width).fill(`*b${l - 1}`).join(', ')}]`);
      return Buffer.concat([b, Buffer.from('\n' + defs.join('\n') + '\n')]);
    }
  }
}

/** Which example is mutated; for the shared include, edge-host (which includes it) is validated. */
const mutated = fc.record({ file: oneOf(...EXAMPLES), mutations: fc.array(mutation, { minLength: 1, maxLength: 6 }) }).map(({ file, mutations }) => ({
  file,
  mutations,
  bytes: mutations.reduce(applyMutation, ORIGINAL.get(file)!),
}));

// ---------------------------------------------------------------------------
// Judging one outcome.
// ---------------------------------------------------------------------------

interface Stats {
  inputs: number;
  times: number[];
  valid: number;
  userErrors: number;
  diagnostics: number;
  kinds: Map<string, number>;
}
const newStats = (): Stats => ({ inputs: 0, times: [], valid: 0, userErrors: 0, diagnostics: 0, kinds: new Map() });
const stats = { structured: newStats(), mutated: newStats() };

/** A coarse class of a diagnostic, to show that every stage (YAML, schema, semantics, input policy) was reached. */
function kindOf(message: string): string {
  if (/^YAML syntax error|^file is (empty|not valid UTF-8)|^refused: (document|this alias)|^file has no YAML|^a key must be a single value/.test(message)) return 'yaml';
  if (/^refused: file is|^refused: this manifest and its includes/.test(message)) return 'limits';
  if (/^key "(__proto__|constructor|prototype)" is not allowed/.test(message)) return 'reserved-key';
  if (/git directory|leaves the repository|outside the repository|is inside the|contains the|symlinks/.test(message)) return 'input-policy';
  if (/^include|^included file/.test(message)) return 'include';
  if (/does not exist in the repository|normalized|already declared|already used|not declared|kernel|symlink has no mode|own base|Debian base/.test(message)) return 'semantic';
  if (/base image|image name|ref ".*" is also used|stream/.test(message)) return 'across-images';
  return 'schema';
}

/** Lines of a file as the user's editor numbers them (bytes read leniently: the file may be invalid UTF-8). */
function fileLines(root: string, file: string): string[] | undefined {
  const abs = path.isAbsolute(file) ? file : path.join(root, file);
  try {
    return fs.readFileSync(abs).toString('utf8').split('\n');
  } catch {
    return undefined;
  }
}

/** Quoted user values are echoed in messages; "undefined" inside them is the user's, not ours. */
const withoutQuoted = (s: string) => s.replace(/"(?:[^"\\]|\\.)*"/g, '""');

function problemsOf(o: Outcome, root: string): string[] {
  const out: string[] = [];
  // A UserError with exit code 1 is what the CLI reports as invalid input; anything else is a crash (exit 3) or a usage error (2).
  if (o.thrown && !(o.thrown.userError && o.thrown.exitCode === 1)) out.push(`threw ${o.thrown.name} (exit code ${o.thrown.exitCode}): ${o.thrown.message}\n${o.thrown.stack}`);
  if (o.polluted) out.push('Object.prototype was modified');
  for (const p of o.manifestProblems ?? []) out.push(`valid manifest is not plain data: ${p}`);
  if (o.ms > TIME_BOUND_MS) out.push(`took ${o.ms.toFixed(0)} ms (bound ${TIME_BOUND_MS} ms)`);
  const texts = o.thrown ? [o.thrown.message] : [];
  for (const d of o.diagnostics ?? []) {
    const show = JSON.stringify(d);
    if (typeof d.message !== 'string' || d.message.trim() === '') out.push(`diagnostic without a message: ${show}`);
    texts.push(d.message, d.hint ?? '', d.path ?? '');
    const locs = d.loc ? [d.loc, ...(d.loc.via ?? [])] : [];
    if (!d.loc) out.push(`diagnostic without a location: ${show}`);
    for (const l of locs) {
      const ls = typeof l.file === 'string' && l.file ? fileLines(root, l.file) : undefined;
      if (!ls) {
        out.push(`location names no readable file: ${show}`);
        continue;
      }
      if (!Number.isInteger(l.line) || l.line < 1 || l.line > ls.length) out.push(`line ${l.line} outside ${l.file} (${ls.length} lines): ${show}`);
      else if (!Number.isInteger(l.col) || l.col < 1 || l.col > ls[l.line - 1]!.length + 1) out.push(`column ${l.col} outside line ${l.line} of ${l.file} (${ls[l.line - 1]!.length} chars): ${show}`);
    }
  }
  for (const t of texts) {
    if (STACK_TRACE.test(t)) out.push(`stack trace or internal error in a message: ${t}`);
    if (/\bundefined\b/.test(withoutQuoted(t))) out.push(`"undefined" in a message: ${t}`);
    if (t.includes('[object Object]')) out.push(`"[object Object]" in a message: ${t}`);
  }
  return out;
}

function record(s: Stats, o: Outcome) {
  s.inputs++;
  s.times.push(o.ms);
  s.valid += o.valid?.length && !o.diagnostics?.length ? 1 : 0;
  s.userErrors += o.thrown?.userError ? 1 : 0;
  for (const d of o.diagnostics ?? []) {
    s.diagnostics++;
    const k = kindOf(d.message);
    s.kinds.set(k, (s.kinds.get(k) ?? 0) + 1);
  }
}

function summary(name: string, s: Stats): string {
  const sorted = [...s.times].sort((a, b) => a - b);
  const q = (p: number) => (sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? 0).toFixed(2);
  const total = sorted.reduce((a, b) => a + b, 0) / 1000;
  return `${name}: ${s.inputs} inputs, ${s.valid} valid, ${s.diagnostics} diagnostics (${[...s.kinds].map(([k, n]) => `${k} ${n}`).join(', ')}), ${s.userErrors} UserErrors; per input median ${q(0.5)} ms, p99 ${q(0.99)} ms, max ${q(1)} ms; validation total ${total.toFixed(1)} s`;
}

// ---------------------------------------------------------------------------

let repoDir: string;
let cliDir: string;
const worker = new ValidatorWorker();
const FUZZ = 'images/fuzz.yaml';

beforeAll(() => {
  repoDir = makeFuzzRepo('fuzz');
  cliDir = makeFuzzRepo('fuzz-cli');
  console.log(`parser fuzz: seed ${SEED} (TREECAST_FUZZ_SEED=${SEED} reproduces), ${RUNS.structured + RUNS.mutated} inputs`);
});
afterAll(async () => {
  await worker.stop();
  for (const [name, s] of Object.entries(stats)) if (s.inputs) console.log(summary(name, s));
  removeDir(repoDir);
  removeDir(cliDir);
});

describe('parser fuzz (issue #12)', () => {
  it(`(a) ${RUNS.structured} schema-shaped manifests with hostile values: located errors only, bounded time, no pollution`, async () => {
    // Warm-up outside the measurement: the first call compiles the JSON Schema (ajv) and loads modules.
    await worker.run(repoDir, [path.join(repoDir, 'images/tiny.yaml')]);
    const started = Date.now();
    await fc.assert(
      fc.asyncProperty(structured, async (text) => {
        fs.writeFileSync(path.join(repoDir, FUZZ), text);
        const o = await worker.run(repoDir, [path.join(repoDir, FUZZ)]);
        if (!o) throw new Error(`hang: no answer after ${HANG_KILL_MS} ms`);
        record(stats.structured, o);
        const problems = problemsOf(o, repoDir);
        if (problems.length) throw new Error(problems.join('\n'));
      }),
      { numRuns: RUNS.structured, seed: SEED, endOnFailure: false },
    );
    fs.rmSync(path.join(repoDir, FUZZ));
    console.log(`(a) wall time ${((Date.now() - started) / 1000).toFixed(1)} s`);
    // The generator must reach every stage, or the property proves little.
    const k = stats.structured.kinds;
    expect(stats.structured.valid).toBeGreaterThan(0);
    for (const kind of ['yaml', 'limits', 'reserved-key', 'schema', 'semantic', 'input-policy', 'include']) expect(k.get(kind) ?? 0, `no "${kind}" diagnostics`).toBeGreaterThan(0);
  }, 300_000);

  it(`(b) ${RUNS.mutated} byte-level mutations of the example manifests: located errors only, bounded time, no pollution`, async () => {
    await worker.run(repoDir, [path.join(repoDir, 'images/tiny.yaml')]);
    const started = Date.now();
    await fc.assert(
      fc.asyncProperty(mutated, async ({ file, bytes }) => {
        const target = file === 'images/common/debian-base.yaml' ? 'images/edge-host.yaml' : file;
        fs.writeFileSync(path.join(repoDir, file), bytes);
        try {
          const o = await worker.run(repoDir, [path.join(repoDir, target)]);
          if (!o) throw new Error(`hang: no answer after ${HANG_KILL_MS} ms`);
          record(stats.mutated, o);
          const problems = problemsOf(o, repoDir);
          if (problems.length) throw new Error(problems.join('\n'));
        } finally {
          fs.writeFileSync(path.join(repoDir, file), ORIGINAL.get(file)!); // the next input starts from the real examples
        }
      }),
      { numRuns: RUNS.mutated, seed: SEED },
    );
    console.log(`(b) wall time ${((Date.now() - started) / 1000).toFixed(1)} s`);
    const k = stats.mutated.kinds;
    expect(stats.mutated.valid).toBeGreaterThan(0);
    for (const kind of ['yaml', 'schema']) expect(k.get(kind) ?? 0, `no "${kind}" diagnostics`).toBeGreaterThan(0);
  }, 300_000);

  it(`${CLI_SAMPLE} of them through the real CLI: exit 0 or 1, never a stack trace`, async () => {
    const inputs = fc.sample(
      fc.oneof(
        structured.map((text) => Buffer.from(text)),
        mutated.map((m) => m.bytes),
      ),
      { numRuns: CLI_SAMPLE, seed: SEED },
    );
    const codes = new Map<number | null, number>();
    for (let i = 0; i < inputs.length; i += CLI_BATCH) {
      const batch = inputs.slice(i, i + CLI_BATCH).map((bytes, j) => ({ rel: `images/cli-${i + j}.yaml`, bytes }));
      for (const { rel, bytes } of batch) fs.writeFileSync(path.join(cliDir, rel), bytes);
      const r = await runCliAsync(['validate', '--repo', cliDir, ...batch.map((b) => b.rel)]);
      codes.set(r.code, (codes.get(r.code) ?? 0) + 1);
      const output = r.stdout + r.stderr;
      expect([0, 1], `exit ${r.code} for ${batch.map((b) => b.rel).join(' ')}:\n${output}`).toContain(r.code);
      expect(output, 'stack trace in CLI output').not.toMatch(STACK_TRACE);
      expect(output).not.toMatch(/\[object Object\]/);
      for (const { rel } of batch) fs.rmSync(path.join(cliDir, rel));
    }
    console.log(`CLI sample: ${inputs.length} inputs in ${Math.ceil(inputs.length / CLI_BATCH)} processes, exit codes ${JSON.stringify(Object.fromEntries(codes))}`);
  }, 300_000);
});

/** runCli, asynchronously: a hung child is killed after 60 s, which fails the exit-code check. */
function runCliAsync(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: PROJECT_ROOT, env: { ...process.env, TREECAST_DEBUG: undefined }, timeout: 60_000 });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
