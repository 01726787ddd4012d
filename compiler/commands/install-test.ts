import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { revParse } from '../compile/ostree.js';
import { EXIT, UsageError, UserError } from '../diagnostics.js';
import { adoptHost, bootHost, destroyHost, installHost, remoteFromKickstart, type Booted, type PhaseTimings } from '../boot/install-test.js';
import type { Remote } from '../boot/sysroot.js';
import { defaultRef, loadImages } from '../images.js';
import { PUBLIC_KEY_FILE, publishOptions } from '../publish/publish.js';
import { openRepo } from '../repo.js';
import { startServer } from '../serve/index.js';
import { printJson, type Command, type CommandContext } from './command.js';

export const installTestCommand: Command = {
  name: 'install-test',
  summary: 'play a host: install a published image into a scratch sysroot and boot it under QEMU',
  usage: 'treecast install-test <image> [--kickstart] [--keep] [--logs DIR] [--timeout SECONDS]\n       treecast install-test --sysroot DIR [--logs DIR] [--timeout SECONDS]',
  help: [
    'Serves the publish dir on 127.0.0.1, then: ostree admin init-fs, os-init, remote add (with the published',
    'GPG key when signed), pull, deploy with the image kernel-args, mkfs.ext4 -d of the sysroot, and a boot of',
    'the loader entry ostree wrote in qemu-system-x86_64 -accel tcg. Passes when the booted system prints',
    'the published commit and systemd reports the system `running` (failed units are listed otherwise). The',
    'probe that reports it is appended to the initramfs for this boot only (docs/boot-recipes.md); the image',
    'needs no test hook. Prints timings per phase.',
    'With --sysroot, boots a sysroot you deployed yourself (README: a host\'s life cycle) and passes when it',
    'boots its default deployment; the sysroot is left as it was.',
    'Options:',
    '  --kickstart   take osname/remote/url/ref from the published kickstart/<image>.ks ostreesetup line',
    '  --sysroot DIR boot this existing sysroot instead of installing one',
    '  --keep        keep the scratch sysroot and disk image',
    '  --logs DIR    where serial console logs go (default test-artifacts/)',
    '  --timeout S   seconds to wait for the marker (default 300)',
  ].join('\n'),
  options: { kickstart: { type: 'boolean' }, sysroot: { type: 'string' }, keep: { type: 'boolean' }, logs: { type: 'string' }, timeout: { type: 'string' } },
  async run(ctx) {
    const logs = path.resolve(String(ctx.values.logs ?? 'test-artifacts'));
    const timeoutMs = Number(ctx.values.timeout ?? 300) * 1000;
    if (!(timeoutMs > 0)) throw new UsageError('--timeout needs a number of seconds');
    if (ctx.values.sysroot !== undefined) return bootExisting(ctx, path.resolve(String(ctx.values.sysroot)), logs, timeoutMs);
    if (ctx.positionals.length !== 1) throw new UsageError('install-test needs one image name (or --sysroot DIR)');
    const repo = openRepo({ repo: ctx.repo });
    const { selected } = loadImages(repo, ctx.positionals);
    const m = selected[0]!.manifest;
    const opts = publishOptions(repo);
    const ref = defaultRef(repo, m);
    const published = await revParse(path.join(opts.dir, 'repo'), ref);
    if (!published) throw new UserError(`${m.name} is not published in ${opts.dir} (run: treecast build ${m.name} && treecast publish ${m.name})`);
    const keyFile = path.join(opts.dir, PUBLIC_KEY_FILE);
    const server = await startServer({ dir: opts.dir, port: 0, log: () => {} });
    let host;
    try {
      let osname = m.name;
      let remote: Remote = { name: opts.remote, url: `${server.url}/repo`, ref, gpgKeyFile: existsSync(keyFile) ? keyFile : undefined };
      if (ctx.values.kickstart) {
        const ks = readFileSync(path.join(opts.dir, 'kickstart', `${m.name}.ks`), 'utf8');
        const fromKs = remoteFromKickstart(ks, existsSync(keyFile) ? keyFile : undefined);
        // The kickstart names the public URL; this harness serves the same tree on its own port.
        osname = fromKs.osname;
        remote = { ...fromKs.remote, url: fromKs.remote.url.replace(opts.url, server.url) };
      }
      host = await installHost(osname, remote, m['kernel-args'] ?? []);
      const boot = await bootHost(host, path.join(logs, `install-test-${m.name}.log`), timeoutMs);
      return report(ctx, { image: m.name, ref, expected: published, expectedWhat: 'published', boot, timings: host.timings });
    } finally {
      await server.close();
      if (host && !ctx.values.keep) await destroyHost(host);
      else if (host) process.stderr.write(`kept sysroot ${host.sysroot} and disk ${host.disk}\n`);
    }
  },
};

/** --sysroot: boot what a person deployed by hand; it must come up on its default deployment. */
async function bootExisting(ctx: CommandContext, sysroot: string, logs: string, timeoutMs: number): Promise<number> {
  if (ctx.positionals.length > 0) throw new UsageError('install-test --sysroot takes no image name');
  if (!existsSync(sysroot)) throw new UserError(`${sysroot}: no such directory`);
  const host = await adoptHost(sysroot);
  try {
    const boot = await bootHost(host, path.join(logs, `install-test-${path.basename(sysroot)}.log`), timeoutMs);
    return report(ctx, { sysroot, expected: boot.entryCommit!, expectedWhat: 'default deployment', boot, timings: host.timings });
  } finally {
    await destroyHost(host);
  }
}

function report(
  ctx: CommandContext,
  r: { image?: string; ref?: string; sysroot?: string; expected: string; expectedWhat: string; boot: Booted; timings: PhaseTimings },
): number {
  const same = /^[0-9a-f]{64}$/.test(r.boot.commit) && r.boot.commit === r.expected && r.boot.deployment === 'ostree';
  // Booted is not enough: a host whose units fail (sshd without host keys...) is not a working host.
  const healthy = r.boot.state === 'running';
  const ok = same && healthy;
  const b = r.boot;
  if (ctx.json) printJson({ image: r.image, ref: r.ref, sysroot: r.sysroot, expected: r.expected, booted: b.commit, deployment: b.deployment, state: b.state, failedUnits: b.failedUnits, ok, timings: r.timings });
  else {
    const verdict = !same ? 'MISMATCH' : healthy ? 'OK' : `NOT HEALTHY (system ${b.state}${b.failedUnits.length ? `; failed units: ${b.failedUnits.join(', ')}` : ''})`;
    process.stdout.write(`${r.image ?? r.sysroot}: booted ${b.commit} (${b.deployment}, system ${b.state}), ${r.expectedWhat} ${r.expected}: ${verdict}\n`);
    for (const [k, v] of Object.entries(r.timings)) process.stdout.write(`  ${k.padEnd(16)} ${v.toFixed(1)}s\n`);
  }
  return ok ? EXIT.ok : EXIT.invalid;
}
