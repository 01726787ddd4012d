#!/bin/bash
# The practical floor for bench/ratios.ts: the work treecast does for
# images/edge-host.yaml, done by hand with the raw tools and the same
# arguments (compiler/steps/base-debian.ts, initramfs.ts, commit, and
# compiler/outputs/squashfs.ts, tarball.ts), in one straight script with no
# caching, no sandbox beyond what dracut needs, and no bookkeeping:
#   mmdebstrap (INITRD=No, the per-user .deb cache) -> remove docs -> overlays
#   -> dracut once -> ostree commit into a fresh bare repo
#   -> mksquashfs -comp zstd -Xcompression-level 3 -> tar | zstd -3
# Each phase prints "phase NAME SECONDS" and the last line "total SECONDS";
# sizes print as "size NAME BYTES".
#
# Usage: bench/raw-build.sh REPO WORKDIR   (as root; REPO holds images/ and overlays/)
# TREECAST_APT_CACHE (else ~/.cache/treecast/apt-archives) is the .deb cache
# treecast uses too, so neither side pays for downloads the other made.
set -euo pipefail
REPO=$(cd "$1" && pwd) W=$2
rm -rf "$W"; mkdir -p "$W"
ROOT=$W/rootfs
APT_CACHE=${TREECAST_APT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/treecast/apt-archives}
mkdir -p "$APT_CACHE"
# The commit time of the checkout, as treecast's SOURCE_DATE_EPOCH.
EPOCH=$(git -C "$REPO" log -1 --format=%ct)

# The package list of edge-host and its includes, read from the manifests
# themselves so the two sides cannot drift apart.
PACKAGES=$(cd "$REPO" && node --input-type=module -e '
import fs from "node:fs"; import yaml from "js-yaml";
const m = yaml.load(fs.readFileSync("images/edge-host.yaml", "utf8"));
const pk = [];
for (const inc of m.include ?? []) pk.push(...(yaml.load(fs.readFileSync(`images/${inc}`, "utf8")).packages ?? []));
pk.push(...(m.packages ?? []));
console.log([...new Set(pk)].join(","));')
OVERLAYS="overlays/motd overlays/ssh-hardening overlays/dracut-live-ostree"

START=$(date +%s.%N)
T=$START
phase() { local now; now=$(date +%s.%N); printf 'phase %s %.2f\n' "$1" "$(echo "$now - $T" | bc)"; T=$now; }

SOURCE_DATE_EPOCH=$EPOCH LC_ALL=C.UTF-8 INITRD=No mmdebstrap --quiet \
  --variant=minbase --components=main --mode=root --format=directory \
  --skip=essential/unlink --skip=download/empty \
  '--setup-hook=mkdir -p "$1"/var/cache/apt/archives/' \
  "--setup-hook=sync-in $APT_CACHE /var/cache/apt/archives/" \
  "--customize-hook=sync-out /var/cache/apt/archives $APT_CACHE" \
  '--aptopt=APT::Install-Recommends "false"' --dpkgopt=force-unsafe-io \
  "--include=$PACKAGES" bookworm "$ROOT"
phase mmdebstrap

# remove-files of images/common/debian-base.yaml, the overlays, the two files;
# ostree stores no device nodes, fifos or sockets.
rm -rf "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/*
for o in $OVERLAYS; do cp -a "$REPO/$o/." "$ROOT/"; done
install -D -m 0600 "$REPO/files/sssd.conf" "$ROOT/etc/sssd/sssd.conf"
mkdir -p "$ROOT/etc/treecast"; printf 'edge\n' > "$ROOT/etc/treecast/role"
find "$ROOT" -xdev \( -type b -o -type c -o -type p -o -type s \) -delete
phase overlays

KVER=$(basename "$(ls -d "$ROOT"/usr/lib/modules/* | head -1)")
# dracut inside the tree, as treecast's initramfs step runs it (bwrap, no network).
bwrap --bind "$ROOT" / --dev /dev --proc /proc --tmpfs /tmp --tmpfs /run --unshare-pid --unshare-net --unshare-ipc --unshare-uts --die-with-parent \
  --clearenv --setenv PATH /usr/sbin:/usr/bin:/sbin:/bin --setenv SOURCE_DATE_EPOCH "$EPOCH" \
  dracut --force --no-hostonly --reproducible --kver "$KVER" "/boot/initrd.img-$KVER" 2>"$W/dracut.log" \
  || { cat "$W/dracut.log" >&2; exit 1; }
phase dracut

ostree init --repo="$W/repo" --mode=bare
ostree commit --repo="$W/repo" --branch=raw/edge-host --tree=dir="$ROOT" \
  --timestamp=@"$EPOCH" --no-xattrs --no-bindings --subject=raw >/dev/null
phase ostree-commit

mksquashfs "$ROOT" "$W/rootfs.squashfs" -noappend -no-progress -quiet -comp zstd -Xcompression-level 3 \
  -reproducible -mkfs-time "$EPOCH" -all-time "$EPOCH" -no-xattrs
phase mksquashfs

tar --create --file=- --directory="$ROOT" --sort=name --numeric-owner --mtime=@"$EPOCH" \
  --format=posix --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
  --xattrs --acls --one-file-system . | zstd -q -T0 -3 -c > "$W/rootfs.tar.zst"
phase tar-zstd

printf 'total %.2f\n' "$(echo "$(date +%s.%N) - $START" | bc)"
printf 'size rootfs %s\n' "$(du -sb "$ROOT" | cut -f1)"
printf 'size squashfs %s\n' "$(stat -c %s "$W/rootfs.squashfs")"
printf 'size tarball %s\n' "$(stat -c %s "$W/rootfs.tar.zst")"
