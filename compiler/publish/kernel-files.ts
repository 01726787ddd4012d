import type { ImageManifestJson } from '../compile/emit.js';
import type { KernelInfo } from '../outputs/output.js';

/**
 * Kernel info for a published diskless version, from what emit recorded in
 * its MANIFEST.json (kernel version, initramfs flavor): publish renders the
 * iPXE script without checking the commit out again.
 */
export function kernelFromManifest(m: ImageManifestJson): KernelInfo {
  return {
    version: m.kernel ?? 'unknown',
    vmlinuz: `/usr/lib/modules/${m.kernel ?? 'unknown'}/vmlinuz`,
    initramfs: `/usr/lib/modules/${m.kernel ?? 'unknown'}/initramfs.img`,
    flavor: m.initramfs ?? 'dracut',
  };
}
