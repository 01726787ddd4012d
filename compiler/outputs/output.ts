/**
 * Output formats: one module each, registered in ./index.ts (LinuxKit's
 * outFuns). Every output of an image is written from the same checkout of
 * its commit, in the layout a booted host sees (/usr/etc at /etc).
 */
import type { ImageManifest } from '../manifest/types.js';

export interface Artifact {
  type: string;
  /** File name inside the version directory. */
  file: string;
  path: string;
  size: number;
  sha256: string;
}

export interface KernelInfo {
  version: string;
  /** Image paths inside the checkout (`tree`), read through compile/rootfs.ts. */
  vmlinuz: string;
  initramfs: string;
  /** Which initramfs the image boots diskless with, from what is installed in it. */
  flavor: 'dracut' | 'live-boot' | 'unknown';
}

export interface OutputContext {
  name: string;
  manifest: ImageManifest;
  version: string;
  commit: string;
  /** The image's ref, and the build repository that holds the commit (the disk output deploys from it). */
  ref: string;
  repo: string;
  epoch: number;
  /** Deployed-layout checkout of the commit: read only, shared by all outputs. */
  tree: string;
  /** Bytes of the regular files in `tree`: how far through it a program is, for its status line. */
  treeBytes?: number;
  /** Staging directory that becomes the version directory once every output is written. */
  outDir: string;
  kernel?: KernelInfo;
  signal: AbortSignal;
  /** Artifacts of outputs this one depends on (diskless uses the squashfs). */
  done: Map<string, Artifact[]>;
}

export interface Output {
  name: string;
  tools: string[];
  /** Outputs that must be written before this one. */
  after?: string[];
  needsKernel?: boolean;
  /**
   * The writer keeps hard links and cannot be told not to (mkfs.erofs 1.5): it needs a checkout
   * whose files are all separate copies (--force-copy), not the hardlink checkout the others read.
   */
  needsCopiedTree?: boolean;
  write(ctx: OutputContext): Promise<Artifact[]>;
}
