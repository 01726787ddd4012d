/**
 * A node's overlay archive: its overlays copied in order plus /etc/hostname,
 * as an uncompressed POSIX tar the node's initramfs unpacks over its root.
 * The same inputs give the same bytes: names sorted, owners 0/0, one mtime,
 * and no atime/ctime or pid-named pax headers.
 */
import { closeSync, fsyncSync, mkdirSync, mkdtempSync, openSync, readdirSync, rmSync, chmodSync } from 'node:fs';
import path from 'node:path';
import { copyTreeInto, mkdirInRoot, writeFileIn } from '../compile/rootfs.js';
import { UserError, withContext } from '../diagnostics.js';
import { renameDurable } from '../durable.js';
import { run } from '../exec.js';
import { resolveRepoInput, type RepoDirs } from '../paths.js';
import type { NodeSpec } from './config.js';

/** SOURCE_DATE_EPOCH, else treecast.yaml source-date-epoch, else 0: never the clock. */
export function archiveEpoch(repo: { config?: { 'source-date-epoch'?: number } }): number {
  const env = process.env.SOURCE_DATE_EPOCH;
  if (env && /^\d+$/.test(env)) return Number(env);
  return repo.config?.['source-date-epoch'] ?? 0;
}

/** The tar argv (pure): what makes the archive reproducible lives here. */
export function tarArgs(staging: string, dest: string, entries: string[], epoch: number): string[] {
  return [
    '--create',
    `--file=${dest}`,
    '--format=posix',
    // pax headers would otherwise carry atime, ctime and a name with our pid.
    '--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime',
    '--owner=0',
    '--group=0',
    '--numeric-owner',
    '--sort=name',
    `--mtime=@${epoch}`,
    '-C',
    staging,
    '--',
    ...entries,
  ];
}

/**
 * Write `dest` (durably: a temp name beside it, fsynced, renamed). Overlays
 * are resolved with the input policy again, exactly as validation did, and
 * copied by the image-root helpers: symlinks stay links and no later overlay
 * can write through an earlier one's link.
 */
export async function writeNodeArchive(repo: RepoDirs & { config?: { 'source-date-epoch'?: number } }, node: NodeSpec, dest: string): Promise<void> {
  mkdirSync(path.dirname(dest), { recursive: true, mode: 0o700 });
  const staging = mkdtempSync(path.join(path.dirname(dest), `.node-${node.name}.staging-`));
  const tmp = path.join(path.dirname(dest), `.${path.basename(dest)}.tmp-${process.pid}`);
  try {
    chmodSync(staging, 0o755); // the archive's "./" must not depend on mkdtemp's 0700
    for (const o of node.overlays) {
      try {
        const dir = resolveRepoInput(repo, o, 'directory');
        if (!dir.ok) throw new UserError(`"${o}" ${dir.reason}`);
        copyTreeInto(dir.path, staging);
      } catch (err) {
        throw withContext(`node ${node.name}: applying overlay ${o}`, err);
      }
    }
    mkdirInRoot(staging, '/etc', 0o755);
    writeFileIn(staging, '/etc/hostname', node.name + '\n', { mode: 0o644 });
    const entries = readdirSync(staging).sort();
    await run('tar', tarArgs(staging, tmp, entries, archiveEpoch(repo)), { progress: false });
    const fd = openSync(tmp, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    chmodSync(tmp, 0o600);
    renameDurable(tmp, dest);
  } finally {
    rmSync(staging, { recursive: true, force: true });
    rmSync(tmp, { force: true });
  }
}
