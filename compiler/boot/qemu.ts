/**
 * Boot a kernel under QEMU and wait for the image's marker line on the
 * serial console. TCG, never KVM: /dev/kvm here is nested virtualization
 * that hangs stock kernels silently (docs/boot-recipes.md). QEMU does not exit on
 * a hang, so the marker — not the exit — is what is awaited, with a deadline.
 */
import { appendFileSync, writeFileSync } from 'node:fs';
import { UserError } from '../diagnostics.js';
import { requirePrograms, start } from '../exec.js';

export interface BootSpec {
  /** Kernel, initrd and command line given to QEMU; without them the firmware (SeaBIOS) boots the disk's own bootloader. */
  kernel?: { kernel: string; initrd: string; append: string };
  /** Raw disk image attached as virtio. */
  disk?: string;
  /** Regex the console must print. */
  marker: RegExp;
  timeoutMs?: number;
  /** Serial console log file (kept as a test artifact). */
  logFile: string;
  memoryMb?: number;
  /** How long the guest may take to power off after the marker (a disk it wrote to must be flushed). Default 15 s. */
  shutdownMs?: number;
  /** The NIC's MAC address (a node of nodes.yaml); QEMU's default 52:54:00:12:34:56 otherwise. */
  mac?: string;
}

export interface BootResult {
  seconds: number;
  markerLine: string;
  match: RegExpMatchArray;
  /** The console's last lines up to the marker (the probe prints failed units just before it). */
  lines: string[];
}

export function qemuArgs(b: BootSpec): string[] {
  const args = [
    '-accel', 'tcg',
    '-machine', 'q35',
    '-cpu', 'max',
    '-smp', '2',
    '-m', String(b.memoryMb ?? 1536),
    '-nographic', '-no-reboot', '-serial', 'mon:stdio',
    // User networking: the guest reaches the host's 127.0.0.1 as 10.0.2.2, and nothing else.
    '-netdev', 'user,id=n0', '-device', `virtio-net-pci,netdev=n0${b.mac ? `,mac=${b.mac}` : ''}`,
    // Without a hardware RNG a TCG guest can wait a minute for entropy before services start.
    '-device', 'virtio-rng-pci',
  ];
  if (b.kernel) args.push('-kernel', b.kernel.kernel, '-initrd', b.kernel.initrd, '-append', b.kernel.append);
  if (b.disk) args.push('-drive', `file=${b.disk},format=raw,if=virtio`);
  return args;
}

export async function bootUntilMarker(b: BootSpec): Promise<BootResult> {
  await requirePrograms(['qemu-system-x86_64']);
  const timeoutMs = b.timeoutMs ?? 300_000;
  const lines: string[] = [];
  writeFileSync(b.logFile, '');
  const t0 = performance.now();
  let resolveMarker!: (m: { line: string; match: RegExpMatchArray }) => void;
  const seen = new Promise<{ line: string; match: RegExpMatchArray }>((r) => (resolveMarker = r));
  const qemu = start('qemu-system-x86_64', qemuArgs(b), {
    onLine(line) {
      lines.push(line);
      if (lines.length > 2000) lines.shift();
      appendFileSync(b.logFile, line + '\n');
      const m = line.match(b.marker);
      if (m) resolveMarker({ line, match: m });
    },
  });
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), timeoutMs)));
  try {
    const outcome = await Promise.race([seen, deadline, qemu.done.then(() => 'exited' as const)]);
    if (outcome === 'timeout' || outcome === 'exited') {
      const tail = lines.slice(-40).join('\n');
      throw new UserError(
        `boot: ${outcome === 'timeout' ? `no marker ${b.marker} within ${timeoutMs / 1000} s` : 'QEMU exited before the marker was printed'} (console log: ${b.logFile}); last console lines:\n${tail}`,
      );
    }
    // Let the guest's poweroff finish, but never wait on it for long.
    await Promise.race([qemu.done, new Promise((r) => setTimeout(r, b.shutdownMs ?? 15_000))]);
    return { seconds: (performance.now() - t0) / 1000, markerLine: outcome.line, match: outcome.match, lines: lines.slice(0, lines.lastIndexOf(outcome.line) + 1) };
  } finally {
    clearTimeout(timer);
    qemu.kill('SIGKILL');
    await qemu.done;
  }
}
