/**
 * Pure planning: which steps an image needs, in the fixed documented order
 * base -> packages -> remove-files -> overlays -> files -> users and groups
 * -> units -> postprocess -> initramfs -> finalize; and in which order images build
 * (a base image before the images derived from it).
 */
import type { ImageManifest } from '../manifest/types.js';
import type { ValidManifest } from '../manifest/validate.js';
import { baseDebian } from '../steps/base-debian.js';
import { baseImage } from '../steps/base-image.js';
import { baseTree } from '../steps/base-tree.js';
import { files } from '../steps/files.js';
import { finalize } from '../steps/finalize.js';
import { initramfs } from '../steps/initramfs.js';
import { overlays } from '../steps/overlays.js';
import { packagesOnImage } from '../steps/packages.js';
import { postprocess } from '../steps/postprocess.js';
import { removeFiles } from '../steps/remove-files.js';
import type { Step } from '../steps/step.js';
import { units } from '../steps/units.js';
import { users } from '../steps/users.js';

export const STEP_ORDER: Step[] = [baseDebian, baseTree, baseImage, packagesOnImage, removeFiles, overlays, files, users, units, postprocess, initramfs, finalize];

export function planSteps(m: ImageManifest): Step[] {
  return STEP_ORDER.filter((s) => s.applies(m));
}

/** Images in build order: every image after the image it derives from. Includes the bases of the selection. */
export function buildOrder(all: ValidManifest[], selected: ValidManifest[]): ValidManifest[] {
  const byName = new Map(all.map((i) => [i.manifest.name, i]));
  const out: ValidManifest[] = [];
  const visit = (img: ValidManifest, stack: string[]) => {
    if (out.includes(img)) return;
    if (stack.includes(img.manifest.name)) throw new Error(`base image cycle: ${[...stack, img.manifest.name].join(' -> ')}`);
    if (img.manifest.base.source === 'image') {
      const base = byName.get(img.manifest.base.image!);
      if (base) visit(base, [...stack, img.manifest.name]);
    }
    out.push(img);
  };
  for (const img of selected) visit(img, []);
  return out;
}

/** Next automatic version: prefix.N with N one past the highest N already used with that prefix. */
export function nextVersion(prefix: string, existing: string[]): string {
  let max = 0;
  for (const v of existing) {
    if (!v.startsWith(prefix + '.')) continue;
    const n = Number(v.slice(prefix.length + 1));
    if (Number.isInteger(n) && n > max) max = n;
  }
  return `${prefix}.${max + 1}`;
}

export function defaultVersionPrefix(epoch: number): string {
  return new Date(epoch * 1000).toISOString().slice(0, 10).replace(/-/g, '');
}
