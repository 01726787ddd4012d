#!/bin/sh
# Measures what a rebuild pays to get a Debian-sized base tree into a work dir
# and commit it again (docs/layers.md): the old path (bare-user repo,
# checkout --force-copy, full commit) against the layered one (bare repo,
# hardlink checkout, xattrs stripped, commit --link-checkout-speedup without
# --no-xattrs, overlayfs over it). Each commit line also shows the bytes
# ostree read (rchar of /proc/PID/io: every read(2), page cache or not).
# Usage: bench/layered-commit.sh [SRC_REPO REV] [WORKDIR]   (as root; needs attr)
# Without SRC_REPO REV, the base is synthetic: /usr/share, /usr/bin, /usr/sbin
# and /usr/include of this host committed to a bare repo (no Debian needed).
set -eu
if [ $# -ge 2 ]; then SRC=$1 REV=$2 W=${3:-/tmp/treecast-bench-layers}; else SRC= REV=base W=${1:-/tmp/treecast-bench-layers}; fi
rm -rf "$W"; mkdir -p "$W"
t() { s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); printf '%-62s %6.2fs\n' "$*" "$(echo "$e - $s" | bc)" | sed "s#$W/##g"; }
# A commit, timed, with the bytes ostree read: a shell's /proc/PID/io counts its reaped children.
commit() { s=$(date +%s.%N); r=$(sh -c 'ostree commit "$@" >/dev/null && sed -n "s/^rchar: //p" /proc/$$/io' sh "$@"); e=$(date +%s.%N)
  printf '%-62s %6.2fs %9s KiB read\n' "commit $*" "$(echo "$e - $s" | bc)" "$((r / 1024))" | sed -e "s#$W/##g" -e "s#$C ##"; }
C="--timestamp=@0 --no-bindings --parent=none"
if [ -z "$SRC" ]; then
  SRC="$W/src-repo"; ostree init --repo="$SRC" --mode=bare; mkdir -p "$W/src/usr"
  cp -a /usr/share /usr/bin /usr/sbin /usr/include "$W/src/usr/"
  t ostree commit --repo="$SRC" --branch=base $C --no-xattrs --tree=dir="$W/src"; rm -rf "$W/src"
fi
for mode in bare-user bare; do ostree init --repo="$W/$mode" --mode=$mode; t ostree pull-local --repo="$W/$mode" "$SRC" "$REV"; done
echo "tree: $(ostree ls -R --repo="$W/bare" "$REV" | wc -l) entries, $(du -sh "$W/bare/objects" | cut -f1) objects"
edit() { cp -p "$1/usr/share/common-licenses/GPL-3" "$W/f.new" && echo x >> "$W/f.new" && mv "$W/f.new" "$1/usr/share/common-licenses/GPL-3"; }
echo "== old: bare-user, full copy, full commit"
t ostree checkout --repo="$W/bare-user" --force-copy "$REV" "$W/copy"
edit "$W/copy"
commit --repo="$W/bare-user" --branch=old $C --no-xattrs --tree=dir="$W/copy"
echo "== bare, hardlink checkout, one file replaced"
t ostree checkout --repo="$W/bare" "$REV" "$W/links"
edit "$W/links"
setfattr -n user.bench -v 1 "$W/links/usr/share/common-licenses/GPL-3"
echo "-- until now: --no-xattrs, the speedup ignored"
commit --repo="$W/bare" --branch=nox $C --no-xattrs --link-checkout-speedup --tree=dir="$W/links"
echo "-- now: list (and strip) xattrs, then the speedup without --no-xattrs"
t sh -c "cd $W/links && getfattr --recursive --no-dereference --match=- -- ."
t setfattr --no-dereference --remove=user.bench -- "$W/links/usr/share/common-licenses/GPL-3"
commit --repo="$W/bare" --branch=new $C --link-checkout-speedup --tree=dir="$W/links"
echo "== overlayfs over the hardlink checkout (mount, one append, umount)"
mkdir -p "$W/upper" "$W/work" "$W/merged"
t mount -t overlay overlay -o "lowerdir=$W/links,upperdir=$W/upper,workdir=$W/work,redirect_dir=off,metacopy=off,index=off" "$W/merged"
t sh -c "echo y >> $W/merged/usr/share/common-licenses/GPL-2"
umount "$W/merged"
t ostree fsck --repo="$W/bare"
tree() { ostree ls --repo="$1" -C -d "$2" / | awk '{print $5}'; }
echo "root trees (all three must be equal): old=$(tree "$W/bare-user" old) nox=$(tree "$W/bare" nox) new=$(tree "$W/bare" new)"
