#!/bin/sh
# url-lib handler for treecast+http(s)://URL [OUTFILE]: an encrypted treecast root.
# The key file (cipher, key, iv, sha256 and size of the plaintext) comes from
# the private tree with this node's token; the ciphertext from the public URL,
# decrypted while it downloads (no second copy in RAM); the result is checked
# against the key file's sha256 before anything mounts it. Prints the file
# (url-lib's contract when no OUTFILE is given); messages go to the console.
type getarg > /dev/null 2>&1 || . /lib/dracut-lib.sh

PATH=/usr/sbin:/usr/bin:/sbin:/bin
url="${1#treecast+}"
outloc="$2"
token=$(getarg treecast.token=)
keyurl=$(getarg treecast.key=)
curl_opts="--globoff --location --fail --show-error --silent --retry 3 --retry-connrefused"

say() { echo "treecast-node: $*" > /dev/kmsg; }

dir=$(mkuniqdir /tmp treecast-root)
# shellcheck disable=SC2086
if ! curl $curl_opts -H "Authorization: Bearer $token" --output "$dir/key" -- "$keyurl" 2> "$dir/err"; then
    say "cannot fetch the root key $keyurl: $(cat "$dir/err") (is treecast.token this node's token?)"
    exit 253
fi
val() { sed -n "s/^$1=//p" "$dir/key"; }
cipher=$(val cipher)
key=$(val key)
iv=$(val iv)
sum=$(val sha256)
rm -f "$dir/key"
if [ "$cipher" != aes-256-ctr ] || [ -z "$key" ] || [ -z "$iv" ] || [ -z "$sum" ]; then
    say "$keyurl is not a treecast root key"
    exit 253
fi

out="${outloc:-$dir/rootfs.squashfs}"
say "fetching and decrypting $url"
# shellcheck disable=SC2086
curl $curl_opts -- "$url" | openssl enc -d -aes-256-ctr -K "$key" -iv "$iv" -out "$out"
got=$(sha256sum "$out")
got=${got%% *}
if [ "$got" != "$sum" ]; then
    # A failed download or a changed ciphertext: never mount it. livenetroot retries.
    say "$url did not decrypt to the root its key was made for (sha256 $got, expected $sum)"
    rm -f "$out"
    exit 253
fi
say "root decrypted and verified (sha256 $sum)"
[ -n "$outloc" ] || echo "$out"
