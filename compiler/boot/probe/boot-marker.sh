#!/bin/sh
# The boot probe's marker (installed into /run by the probe's initramfs hook,
# never into the image): once boot has finished, report which commit booted
# and whether the system is healthy, on the serial console, then power off.
#   TREECAST-FAILED-UNIT <unit>                            (one per failed unit)
#   IMAGE-BOOTED-<commit> deployment=<live|ostree> state=<running|degraded|...> host=<hostname>
set -u
cmdline=$(cat /proc/cmdline)

karg() { # karg NAME -> value of the last NAME=... argument
    v=
    for a in $cmdline; do
        case "$a" in "$1"=*) v=${a#"$1"=} ;; esac
    done
    printf '%s' "$v"
}

say() {
    if [ -w /dev/ttyS0 ]; then
        # leading newline: a getty prompt ("vm login: ") may have left a partial line
        printf '\n%s\n' "$1" > /dev/ttyS0
    fi
    printf '%s\n' "$1"
}

id=
if [ -e /run/ostree-booted ]; then
    deployment=ostree
    # ostree=/ostree/boot.N/OS/BOOTCSUM/S -> .../ostree/deploy/OS/deploy/<CHECKSUM>.<serial>
    link=$(karg ostree)
    if [ -n "$link" ]; then
        target=$(readlink -f "$link" 2>/dev/null || true)
        case "$target" in
            */deploy/*) base=${target##*/}; id=${base%.*} ;;
        esac
    fi
    if [ -z "$id" ] && command -v ostree >/dev/null 2>&1; then
        # "* OSNAME CHECKSUM.SERIAL" marks the booted deployment
        id=$(ostree admin status 2>/dev/null | awk '$1 == "*" { sub(/\.[0-9]+$/, "", $3); print $3; exit }')
    fi
else
    deployment=live
    id=$(karg treecast.commit)
fi
[ -n "$id" ] || id=unknown

# This unit is Type=simple, so it does not hold up the end of boot it waits for.
state=$(timeout 240 systemctl is-system-running --wait 2>/dev/null)
[ -n "$state" ] || state=unknown
if [ "$state" != running ]; then
    systemctl list-units --failed --plain --no-legend --no-pager 2>/dev/null | while read -r unit _; do
        say "TREECAST-FAILED-UNIT $unit"
    done
fi
# The hostname the system ended up with: a diskless node's comes from its own overlay (nodes.yaml).
host=$(hostname 2>/dev/null || true)
say "IMAGE-BOOTED-$id deployment=$deployment state=$state host=${host:-unknown}"
systemctl --no-block poweroff
