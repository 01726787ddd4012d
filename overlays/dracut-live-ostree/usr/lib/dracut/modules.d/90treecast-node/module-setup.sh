#!/bin/bash
# treecast-node: what a node of a diskless fleet (nodes.yaml, docs/nodes.md) needs
# from its initramfs beyond dracut's livenet:
#  - an encrypted root (outputs.diskless.encrypt): the key fetched from the private
#    tree with the node's token, the ciphertext fetched, decrypted and checked;
#  - the node's own overlay (hostname, its files), fetched with the token and
#    unpacked over the live root before it is switched to (an Alpine apkovl).
# Both act only when their kernel arguments are given (treecast.key=,
# treecast.node-overlay=): the same initramfs boots hosts and plain nodes.

check() {
    # only when asked for (dracut.conf.d/50-treecast.conf)
    return 255
}

depends() {
    echo livenet url-lib network
    return 0
}

install() {
    inst_multiple curl openssl sha256sum tar sed
    inst_hook netroot 50 "$moddir/treecast-netroot.sh"
    inst_script "$moddir/treecast-fetch.sh" /sbin/treecast-fetch
    inst_hook pre-pivot 60 "$moddir/treecast-node-overlay.sh"
}
