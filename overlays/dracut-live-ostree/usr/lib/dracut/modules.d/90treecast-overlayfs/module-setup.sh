#!/bin/bash
# treecast: work around dracut 059 (Debian bookworm) live overlayfs boots failing with
#   sysroot.mount: overlayfs: failed to resolve '/run/overlayfs'
# by creating the overlay upper/work directories before sysroot.mount runs.

check() {
    # only when asked for (dracut.conf.d/50-treecast.conf)
    return 255
}

depends() {
    echo dmsquash-live
    return 0
}

install() {
    inst_hook pre-mount 10 "$moddir/treecast-overlayfs-dirs.sh"
}
