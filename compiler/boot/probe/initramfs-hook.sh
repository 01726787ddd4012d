# treecast boot probe: a dracut cmdline hook appended to the image's initramfs
# by the test harness (compiler/boot/probe.ts). It only writes to /run, which
# survives the switch to the real root: a runtime unit that prints the boot
# marker. Nothing is written to the image or to the host's /etc.
mkdir -p /run/treecast /run/systemd/system/multi-user.target.wants
cat > /run/treecast/boot-marker <<'TREECAST_MARKER_EOF'
@MARKER@
TREECAST_MARKER_EOF
chmod 0755 /run/treecast/boot-marker
cat > /run/systemd/system/treecast-boot-marker.service <<'TREECAST_UNIT_EOF'
[Unit]
Description=treecast boot probe (test harness, from /run)
ConditionPathExists=!/etc/initrd-release
After=multi-user.target

[Service]
Type=simple
ExecStart=/bin/sh /run/treecast/boot-marker
TREECAST_UNIT_EOF
ln -sf ../treecast-boot-marker.service /run/systemd/system/multi-user.target.wants/treecast-boot-marker.service
