/** The output registry: format name -> writer. A new format is a new module listed here, nothing else. */
import type { Output } from './output.js';
import { squashfs } from './squashfs.js';
import { tarball } from './tarball.js';
import { erofs } from './erofs.js';
import { disklessOutput } from './diskless.js';
import { diskOutput, type DiskRemote } from './disk.js';

/** `publish`: where hosts find the published tree (the diskless boot's URLs, a disk's remote). */
export function outputRegistry(publish: DiskRemote): Map<string, Output> {
  return new Map([squashfs, tarball, erofs, disklessOutput(publish.publicUrl), diskOutput(publish)].map((o) => [o.name, o]));
}

export type { Artifact, Output, OutputContext, KernelInfo } from './output.js';
