#!/bin/sh
# pre-pivot hook (sourced): this node's own files (nodes.yaml: hostname,
# overlays), a tar fetched from the private tree with the node's token and
# unpacked over the live root (its overlayfs upper in RAM), like Alpine's
# apkovl loaded from a web server. A node that cannot get its overlay stops
# here rather than boot with another node's identity.
_tc_url=$(getarg treecast.node-overlay=)
if [ -n "$_tc_url" ]; then
    _tc_token=$(getarg treecast.token=)
    if ! curl --globoff --location --fail --show-error --silent --retry 3 --retry-connrefused \
        -H "Authorization: Bearer $_tc_token" --output /tmp/treecast-node.tar -- "$_tc_url" 2> /tmp/treecast-node.err; then
        echo "treecast-node: cannot fetch this node's overlay $_tc_url: $(cat /tmp/treecast-node.err)" > /dev/kmsg
        die "treecast-node: no node overlay"
    fi
    # Owners and modes as the archive says (treecast writes it with numeric owners);
    # existing directories keep theirs.
    if ! tar -x -p --numeric-owner --no-overwrite-dir -f /tmp/treecast-node.tar -C "$NEWROOT"; then
        die "treecast-node: cannot unpack the node overlay"
    fi
    rm -f /tmp/treecast-node.tar /tmp/treecast-node.err
    echo "treecast-node: node overlay applied ($(getarg treecast.node=))" > /dev/kmsg
fi
unset _tc_url _tc_token
