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
import { isDirIn, isFileIn, lstatIn, readdirIn, removeInRoot, renameIn } from './rootfs.js';

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
  const registry = outputRegistry(repo.publicUrl);
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
      await run('ostree', ['checkout', `--repo=${localRepo}`, built.commit, tree], { signal });
      // What `ostree admin deploy` shows a booted host: /usr/etc becomes /etc.
      // The checkout is image content: its paths are resolved inside it (rootfs.ts).
      if (lstatIn(tree, '/usr/etc')?.isDirectory()) {
        removeInRoot(tree, '/etc');
        renameIn(tree, '/usr/etc', '/etc');
      }
    }
    const kernel = outputs.length ? findKernel(tree) : undefined;
    const done = new Map<string, Artifact[]>();
    // Outputs without dependencies run in parallel; dependants after them.
    const pending = [...outputs];
    while (pending.length) {
      const ready = pending.filter((o) => (o.after ?? []).every((d) => done.has(d)));
      for (const o of ready) pending.splice(pending.indexOf(o), 1);
      await Promise.all(
        ready.map(async (o) => {
          if (o.needsKernel && !kernel) throw new UserError(`output ${o.name} of image ${m.name} needs a kernel and an initramfs in /usr/lib/modules/<version>/, and the image has none (add linux-image-amd64 and dracut to packages)`);
          const t0 = performance.now();
          try {
            done.set(o.name, await o.write({ name: m.name, manifest: m, version: built.version, commit: built.commit, epoch, tree, outDir: staging, kernel, signal, done }));
          } catch (err) {
            throw withContext(`writing output ${o.name} of image ${m.name}`, err);
          }
          info(`  output ${o.name.padEnd(11)} ${((performance.now() - t0) / 1000).toFixed(1).padStart(6)}s  ${done.get(o.name)!.map((a) => `${a.file} ${humanSize(a.size)}`).join(', ')}`);
        }),
      );
    }
    const artifacts = [...done.values()].flat().sort((a, b) => (a.file < b.file ? -1 : 1));
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
      packages: parseTupleArray(await commitMetadata(localRepo, built.commit, 'treecast.packages')).map(([name, version, arch]) => ({ name: name!, version: version!, arch: arch ?? '' })),
      privateFiles,
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
