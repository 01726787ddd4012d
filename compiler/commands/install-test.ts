import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { revParse } from '../build/ostree.js';
import { EXIT, UsageError, UserError } from '../diagnostics.js';
import { bootHost, destroyHost, installHost, remoteFromKickstart } from '../boot/install-test.js';
import type { Remote } from '../boot/sysroot.js';
import { defaultRef, loadImages } from '../images.js';
import { PUBLIC_KEY_FILE, publishOptions } from '../publish/publish.js';
import { openRepo } from '../repo.js';
import { startServer } from '../serve/index.js';
import { printJson, type Command } from './command.js';

export const installTestCommand: Command = {
  name: 'install-test',
  summary: 'play a host: install a published image into a scratch sysroot and boot it under QEMU',
  usage: 'treecast install-test <image> [--kickstart] [--keep] [--logs DIR] [--timeout SECONDS]',
  help: [
    'Serves the publish dir on 127.0.0.1, then: ostree admin init-fs, os-init, remote add (with the published',
    'GPG key when signed), pull, deploy with the image kernel-args, mkfs.ext4 -d of the sysroot, and a boot of',
    'the loader entry ostree wrote in qemu-system-x86_64 -accel tcg. Passes when the booted system prints',
    'IMAGE-BOOTED-<commit> (overlays/boot-marker) with the published commit. Prints timings per phase.',
    'Options:',
    '  --kickstart   take osname/remote/url/ref from the published kickstart/<image>.ks ostreesetup line',
    '  --keep        keep the scratch sysroot and disk image',
    '  --logs DIR    where serial console logs go (default test-artifacts/)',
    '  --timeout S   seconds to wait for the marker (default 300)',
  ].join('\n'),
  options: { kickstart: { type: 'boolean' }, keep: { type: 'boolean' }, logs: { type: 'string' }, timeout: { type: 'string' } },
  async run(ctx) {
    if (ctx.positionals.length !== 1) throw new UsageError('install-test needs one image name');
    const repo = openRepo({ repo: ctx.repo });
    const { selected } = loadImages(repo, ctx.positionals);
    const m = selected[0]!.manifest;
    const opts = publishOptions(repo);
    const ref = defaultRef(repo, m);
    const published = await revParse(path.join(opts.dir, 'repo'), ref);
    if (!published) throw new UserError(`${m.name} is not published in ${opts.dir} (run: treecast build ${m.name} && treecast publish ${m.name})`);
    const keyFile = path.join(opts.dir, PUBLIC_KEY_FILE);
    const server = await startServer({ dir: opts.dir, port: 0, log: () => {} });
    const logs = path.resolve(String(ctx.values.logs ?? 'test-artifacts'));
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
      host = await installHost(osname, remote, [...(m['kernel-args'] ?? []), 'treecast.marker=1']);
      const boot = await bootHost(host, path.join(logs, `install-test-${m.name}.log`), Number(ctx.values.timeout ?? 300) * 1000);
      const ok = boot.commit === published && boot.deployment === 'ostree';
      if (ctx.json) printJson({ image: m.name, ref, expected: published, booted: boot.commit, deployment: boot.deployment, ok, timings: host.timings });
      else {
        process.stdout.write(`${m.name}: booted ${boot.commit} (${boot.deployment}), published ${published}: ${ok ? 'OK' : 'MISMATCH'}\n`);
        for (const [k, v] of Object.entries(host.timings)) process.stdout.write(`  ${k.padEnd(16)} ${v.toFixed(1)}s\n`);
      }
      return ok ? EXIT.ok : EXIT.invalid;
    } finally {
      await server.close();
      if (host && !ctx.values.keep) await destroyHost(host);
      else if (host) process.stderr.write(`kept sysroot ${host.sysroot} and disk ${host.disk}\n`);
    }
  },
};
