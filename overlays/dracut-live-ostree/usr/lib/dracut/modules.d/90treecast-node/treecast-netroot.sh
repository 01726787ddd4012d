#!/bin/sh
# netroot hook: sourced by dracut's netroot.sh just before it runs livenetroot.
# With treecast.key= on the command line the root image is encrypted: give its
# URL the treecast+ scheme and register /sbin/treecast-fetch as that scheme's
# url-lib handler. livenetroot inherits the exported map (url-lib only adds
# to it), so its fetch_url decrypts instead of a plain download; everything
# else (dmsquash-live, the overlayfs root, the systemd generator that matched
# root=live:http://...) stays dracut's own.
if [ -n "$(getarg treecast.key=)" ]; then
    case "$netroot" in
        livenet:http://* | livenet:https://*)
            netroot="livenet:treecast+${netroot#livenet:}"
            ;;
    esac
    url_handler_map="treecast+http:treecast-fetch treecast+https:treecast-fetch${url_handler_map:+ $url_handler_map}"
    export url_handler_map
fi
