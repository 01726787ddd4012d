#!/bin/sh
# Measures what a rebuild pays to get a Debian-sized base tree into a work dir
# and commit it again (docs/layers.md): the old path (bare-user repo,
# checkout --force-copy, full commit) against the layered one (bare repo,
# hardlink checkout, commit --link-checkout-speedup, overlayfs over it).
# Usage: bench/layered-commit.sh SRC_REPO REV [WORKDIR]   (as root)
set -eu
SRC=$1 REV=$2 W=${3:-/tmp/treecast-bench-layers}
rm -rf "$W"; mkdir -p "$W"
t() { s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); printf '%-58s %6.2fs\n' "$*" "$(echo "$e - $s" | bc)" | sed "s#$W/##g"; }
for mode in bare-user bare; do ostree init --repo="$W/$mode" --mode=$mode; t ostree pull-local --repo="$W/$mode" "$SRC" "$REV"; done
echo "tree: $(ostree ls -R --repo="$W/bare" "$REV" | wc -l) entries, $(du -sh "$W/bare/objects" | cut -f1) objects"
C="--timestamp=@0 --no-xattrs --no-bindings --parent=none"
echo "== old: bare-user, full copy, full commit"
t ostree checkout --repo="$W/bare-user" --force-copy "$REV" "$W/copy"
t sh -c "echo x >> $W/copy/etc/motd"
t ostree commit --repo="$W/bare-user" --branch=old $C --tree=dir="$W/copy"
echo "== new: bare, hardlink checkout, devino commit"
t ostree checkout --repo="$W/bare" "$REV" "$W/links"
t sh -c "cp -p $W/links/etc/motd $W/motd.new && echo x >> $W/motd.new && mv $W/motd.new $W/links/etc/motd"
t ostree commit --repo="$W/bare" --branch=new $C --link-checkout-speedup --tree=dir="$W/links"
echo "== same tree commits, no speedup (bare)"
t ostree commit --repo="$W/bare" --branch=new2 $C --tree=dir="$W/links"
echo "== overlayfs over the hardlink checkout (mount, one append, umount)"
mkdir -p "$W/upper" "$W/work" "$W/merged"
t mount -t overlay overlay -o "lowerdir=$W/links,upperdir=$W/upper,workdir=$W/work,redirect_dir=off,metacopy=off,index=off" "$W/merged"
t sh -c "echo y >> $W/merged/etc/issue"
umount "$W/merged"
echo "== layered commit: --tree=ref + --tree=dir of one file"
mkdir -p "$W/layer/etc"; echo hi > "$W/layer/etc/hello"
t ostree commit --repo="$W/bare" --branch=layer $C --tree=ref="$REV" --tree=dir="$W/layer"
t ostree fsck --repo="$W/bare"
echo "commits: old=$(ostree rev-parse --repo="$W/bare-user" old) new=$(ostree rev-parse --repo="$W/bare" new) new2=$(ostree rev-parse --repo="$W/bare" new2)"
