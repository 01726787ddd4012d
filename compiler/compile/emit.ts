/**
 * emit: every artifact of an image, from one checkout of its commit in the
 * deployed layout, written into a staging directory that is renamed into
 * place only when all of them (and MANIFEST.json, SHA256SUMS) are complete.
 */
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { UserError, withContext } from '../diagnostics.js';
import { requirePrograms, run } from '../exec.js';
import { info } from '../log.js';
import type { ImageManifest } from '../manifest/types.js';
import { outputRegistry, type Artifact, type KernelInfo, type Output } from '../outputs/index.js';
import type { Repo } from '../repo.js';
import type { ImageBuildResult } from './build.js';
import { localRepoPath } from './build.js';
import { commitMetadata, parseTupleArray } from './ostree.js';
import { privateFiles as listPrivateFiles, privateFilesOfCommit, type PrivateFile } from './private-files.js';
import { renameDurable, syncTree } from '../durable.js';
import { isDirIn, isFileIn, lstatIn, readdirIn, removeInRoot, renameIn, walkTree } from './rootfs.js';
import { progressScope } from '../progress.js';
import { publishOptions } from '../publish/publish.js';
import { buildKeyPath, sealArtifacts } from './encrypt.js';

export interface ImageManifestJson {
  name: string;
  version: string;
  ref: string;
  commit: string;
  inputHash: string;
  gitCommit: string;
  manifestSha256: string;
  buildTime: string;
  kernel?: string;
  /** How the initramfs fetches a diskless root (dracut livenet or live-boot). */
  initramfs?: 'dracut' | 'live-boot' | 'unknown';
  kernelArgs: string[];
  artifacts: Omit<Artifact, 'path'>[];
  packages: { name: string; version: string; arch: string }[];
  /** Not world-readable in the image, yet in every artifact and in the published commit: public in practice. */
  privateFiles: PrivateFile[];
  /** outputs.diskless.encrypt: the root is published as ciphertext only, its key in the private tree. */
  encrypted?: boolean;
}

export interface EmitResult {
  dir: string;
  manifest: ImageManifestJson;
  artifacts: Artifact[];
  reused: boolean;
}

export const outRoot = (repo: Repo, name: string) => path.join(repo.cacheDir, 'out', name);

/** Which outputs an image asks for, with their dependencies, in an order that respects them. */
export function planOutputs(m: ImageManifest, registry: Map<string, Output>): Output[] {
  const wanted = new Set(Object.keys(m.outputs ?? {}).filter((k) => k !== 'ostree'));
  for (const name of [...wanted]) for (const dep of registry.get(name)?.after ?? []) wanted.add(dep);
  const ordered: Output[] = [];
  const visit = (name: string) => {
    const o = registry.get(name);
    if (!o) throw new UserError(`unknown output "${name}" (known: ${[...registry.keys()].join(', ')})`);
    if (ordered.includes(o)) return;
    for (const d of o.after ?? []) visit(d);
    ordered.push(o);
  };
  [...wanted].sort().forEach(visit);
  return ordered;
}

export async function emitImage(repo: Repo, m: ImageManifest, built: ImageBuildResult, epoch: number, signal: AbortSignal): Promise<EmitResult> {
  const finalDir = path.join(outRoot(repo, m.name), built.version);
  const existing = readManifestJson(finalDir);
  if (existing && existing.commit === built.commit) {
    return { dir: finalDir, manifest: existing, artifacts: existing.artifacts.map((a) => ({ ...a, path: path.join(finalDir, a.file) })), reused: true };
  }
  // A disk image's remote and the diskless URLs point where publish puts the image.
  const publish = publishOptions(repo);
  const registry = outputRegistry({ publicUrl: publish.url, remote: publish.remote, signing: publish.key });
  const outputs = planOutputs(m, registry);
  await requirePrograms(outputs.flatMap((o) => o.tools));

  const localRepo = localRepoPath(repo);
  mkdirSync(outRoot(repo, m.name), { recursive: true });
  const staging = mkdtempSync(path.join(outRoot(repo, m.name), `.staging-${built.version}-`));
  chmodSync(staging, 0o755); // mkdtemp makes it 0700; it becomes a published directory
  const tmpRoot = path.join(repo.cacheDir, 'tmp');
  mkdirSync(tmpRoot, { recursive: true });
  const checkoutParent = mkdtempSync(path.join(tmpRoot, `${m.name}-checkout-`));
  const tree = path.join(checkoutParent, 'tree');
  try {
    if (outputs.length) {
      // A hardlink checkout of the bare build repository: no byte is copied (a 730 MiB
      // Debian tree in well under a second). Files of equal content then share one
      // inode (one object): tar (--hard-dereference) and mksquashfs (-no-hardlinks)
      // store them as the separate files the commit has, so the artifacts are the
      // bytes a full copy gives (test/artifacts.test.ts, reproducible-debian). An
      // output that keeps hard links regardless (erofs) gets the --force-copy checkout.
      // No output writes into the tree: its files are the repository's objects.
      const copy = outputs.some((o) => o.needsCopiedTree);
      await run('ostree', ['checkout', ...(copy ? ['--force-copy'] : []), `--repo=${localRepo}`, built.commit, tree], { signal, progress: { label: `${m.name}: checkout` } });
      // What `ostree admin deploy` shows a booted host: /usr/etc becomes /etc.
      // The checkout is image content: its paths are resolved inside it (rootfs.ts).
      if (lstatIn(tree, '/usr/etc')?.isDirectory()) {
        removeInRoot(tree, '/etc');
        renameIn(tree, '/usr/etc', '/etc');
      }
    }
    const kernel = outputs.length ? findKernel(tree) : undefined;
    const encrypted = m.outputs?.diskless?.encrypt === true;
    const bytes = outputs.length ? treeBytes(tree) : 0;
    const done = await writeOutputs(outputs, m, signal, (o, outputSignal, written) => {
      if (o.needsKernel && !kernel) throw new UserError(`output ${o.name} of image ${m.name} needs a kernel and an initramfs in /usr/lib/modules/<version>/, and the image has none (add linux-image-amd64 and dracut to packages)`);
      return o.write({ name: m.name, manifest: m, version: built.version, commit: built.commit, ref: built.ref, repo: localRepo, epoch, tree, treeBytes: bytes, outDir: staging, kernel, signal: outputSignal, done: written });
    });
    let artifacts = [...done.values()].flat();
    // An encrypted image publishes only ciphertext; its key stays in the cache until publish puts it in the private tree.
    if (encrypted) {
      const t0 = performance.now();
      artifacts = await progressScope(`${m.name}: encrypt`, () => sealArtifacts(m.name, built.version, artifacts, buildKeyPath(repo.cacheDir, m.name, built.version), signal));
      const enc = artifacts.find((a) => a.type === 'squashfs-encrypted')!;
      info(`  ${'encrypt'.padEnd(18)} ${((performance.now() - t0) / 1000).toFixed(1).padStart(6)}s  ${enc.file} ${humanSize(enc.size)}, a new key (published to the private tree only)`);
    }
    artifacts.sort((a, b) => (a.file < b.file ? -1 : 1));
    // The artifacts are written from the checkout, so its walk is what they hold; without one, the commit (public in repo/) is listed (private-files.ts).
    const privateFiles = outputs.length ? listPrivateFiles(tree) : await privateFilesOfCommit(localRepo, built.commit, signal);
    const manifest: ImageManifestJson = {
      name: m.name,
      version: built.version,
      ref: built.ref,
      commit: built.commit,
      inputHash: built.inputHash,
      gitCommit: (await commitMetadata(localRepo, built.commit, 'treecast.git-commit')) ?? 'none',
      manifestSha256: (await commitMetadata(localRepo, built.commit, 'treecast.manifest-sha256')) ?? '',
      buildTime: new Date(epoch * 1000).toISOString(),
      kernel: kernel?.version,
      initramfs: kernel?.flavor,
      kernelArgs: m['kernel-args'] ?? [],
      artifacts: artifacts.map(({ path: _p, ...rest }) => rest),
      // Published beside the ciphertext: an encrypted image names neither its packages nor its files.
      packages: encrypted ? [] : parseTupleArray(await commitMetadata(localRepo, built.commit, 'treecast.packages')).map(([name, version, arch]) => ({ name: name!, version: version!, arch: arch ?? '' })),
      privateFiles: encrypted ? [] : privateFiles,
      ...(encrypted ? { encrypted: true } : {}),
    };
    writeFileSync(path.join(staging, 'MANIFEST.json'), JSON.stringify(manifest, null, 2) + '\n');
    writeFileSync(path.join(staging, 'SHA256SUMS'), artifacts.map((a) => `${a.sha256}  ${a.file}\n`).join(''));
    swapIntoPlace(staging, finalDir);
    return { dir: finalDir, manifest, artifacts: artifacts.map((a) => ({ ...a, path: path.join(finalDir, a.file) })), reused: false };
  } finally {
    rmSync(checkoutParent, { recursive: true, force: true });
    rmSync(staging, { recursive: true, force: true });
  }
}

/**
 * Write the outputs of one image in parallel, each as soon as the outputs it
 * depends on are done. The first failure aborts the others, and this returns
 * only when every one has settled (its programs have exited): the caller
 * removes the checkout they read right after, and a sibling must never see
 * its input deleted under it. The first failure is rethrown, naming its output.
 */
export async function writeOutputs(
  outputs: Output[],
  m: ImageManifest,
  signal: AbortSignal,
  write: (o: Output, signal: AbortSignal, done: Map<string, Artifact[]>) => Promise<Artifact[]>,
): Promise<Map<string, Artifact[]>> {
  const done = new Map<string, Artifact[]>();
  const controller = new AbortController();
  const forward = () => controller.abort(signal.reason);
  if (signal.aborted) forward();
  signal.addEventListener('abort', forward, { once: true });
  let first: { error: unknown } | undefined;
  const tasks = new Map<string, Promise<void>>();
  // `outputs` lists dependencies before dependants (planOutputs).
  for (const o of outputs) {
    const deps = (o.after ?? []).map((d) => tasks.get(d)).filter((t) => t !== undefined);
    const task = (async () => {
      await Promise.all(deps);
      if (controller.signal.aborted) throw new UserError(`output ${o.name} of image ${m.name} was not written: another output failed`);
      const t0 = performance.now();
      try {
        done.set(o.name, await progressScope(`${m.name}: ${o.name}`, () => write(o, controller.signal, done)));
      } catch (err) {
        throw withContext(`writing output ${o.name} of image ${m.name}`, err);
      }
      info(`  output ${o.name.padEnd(11)} ${((performance.now() - t0) / 1000).toFixed(1).padStart(6)}s  ${done.get(o.name)!.map((a) => `${a.file} ${humanSize(a.size)}`).join(', ')}`);
    })();
    task.catch((error: unknown) => {
      // The first failure is the cause; the siblings it aborts fail with "interrupted".
      first ??= { error };
      controller.abort();
    });
    tasks.set(o.name, task);
  }
  try {
    await Promise.allSettled(tasks.values());
  } finally {
    signal.removeEventListener('abort', forward);
  }
  if (first) throw first.error;
  return done;
}

/** Bytes of the regular files in a checkout (for "read 120 MiB (55%)" in a status line). */
function treeBytes(tree: string): number {
  let n = 0;
  for (const [, st] of walkTree(tree)) if (st.isFile()) n += st.size;
  return n;
}

export function readManifestJson(dir: string): ImageManifestJson | undefined {
  try {
    return JSON.parse(readFileSync(path.join(dir, 'MANIFEST.json'), 'utf8')) as ImageManifestJson;
  } catch {
    return undefined;
  }
}

/**
 * Replace `dest` by `staging` with renames only: a reader sees the old or the
 * new directory, never a mix. The staging tree is fsynced first, so a power
 * loss after the rename cannot leave a version directory with empty files.
 */
export function swapIntoPlace(staging: string, dest: string): void {
  syncTree(staging);
  if (existsSync(dest)) {
    const old = moveAside(dest);
    renameDurable(staging, dest);
    rmSync(old, { recursive: true, force: true });
  } else {
    renameDurable(staging, dest);
  }
}

/**
 * Remove a published directory so readers see it whole or not at all: an
 * in-place `rm -r` killed half-way would leave a visible, incomplete version.
 */
export function removeWhole(dir: string): void {
  if (existsSync(dir)) rmSync(moveAside(dir), { recursive: true, force: true });
}

/** Rename to a dot name: servers never list it, and the next publish removes it if we die right after. */
function moveAside(dir: string): string {
  const old = path.join(path.dirname(dir), `.${path.basename(dir)}.old-${process.pid}-${Date.now()}`);
  renameSync(dir, old);
  return old;
}

/**
 * The newest kernel with an initramfs in the checkout, and which initramfs
 * system built it. Paths are image paths: a `vmlinuz` that is a link leads
 * somewhere inside the image, never to a host file that would be published.
 */
export function findKernel(tree: string): KernelInfo | undefined {
  const modules = '/usr/lib/modules';
  const versions = readdirIn(tree, modules).filter((v) => isFileIn(tree, `${modules}/${v}/vmlinuz`) && isFileIn(tree, `${modules}/${v}/initramfs.img`));
  if (!versions.length) return undefined;
  const version = versions.sort((a, b) => a.localeCompare(b, undefined, { numeric: true })).pop()!;
  const flavor = isDirIn(tree, '/usr/lib/dracut/modules.d/90dmsquash-live')
    ? 'dracut'
    : isDirIn(tree, '/usr/share/initramfs-tools/scripts/live') || isDirIn(tree, '/usr/lib/live/boot')
      ? 'live-boot'
      : 'unknown';
  return { version, vmlinuz: `${modules}/${version}/vmlinuz`, initramfs: `${modules}/${version}/initramfs.img`, flavor };
}

export function humanSize(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) (n /= 1024), i++;
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}
