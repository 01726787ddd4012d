#!/usr/bin/env bash
# Installs everything treecast needs on a fresh Debian 12 machine (run as root):
# the system tools it drives, then the npm dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."

# Tools treecast drives (see `treecast doctor`) plus what the boot tests need.
# Deliberately no debootstrap/debos: they pull systemd-resolved (see docs/boot-recipes.md).
PACKAGES=(
  ostree mmdebstrap squashfs-tools zstd tar gnupg bubblewrap git
  qemu-system-x86 e2fsprogs xz-utils gzip cpio erofs-utils
  fdisk extlinux syslinux-common
  chromium ca-certificates curl openssl busybox-static systemd util-linux rsync attr
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# npm ci installs exactly the lock file. If the registry lacks a locked optional
# platform package (mirrors lag behind npmjs), fall back to npm install rather
# than leave the machine without dependencies.
if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund || npm install --no-audit --no-fund
else
  npm install --no-audit --no-fund
fi
