#!/bin/sh
# pre-mount hook (sourced by dracut-pre-mount): make sure the overlayfs
# upper and work directories exist for a live (root=live:...) boot.
case "$(getarg root=)" in
    live:*)
        mkdir -m 0755 -p /run/overlayfs /run/ovlwork
        ;;
esac
