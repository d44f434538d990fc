#!/usr/bin/env bash
# Makes base images offline and imports them into kiln's store:
#   busybox  — from Debian's busybox-static (always)
#   debian   — from `mmdebstrap --variant=minbase bookworm` (only with --debian; needs the Debian mirror)
# Usage: scripts/base-images.sh KILN_BINARY [--debian]
set -euo pipefail
kiln=${1:?usage: base-images.sh KILN_BINARY [--debian]}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ ! -x /bin/busybox ]; then
  echo "busybox-static is not installed (apt-get install busybox-static)" >&2
  exit 1
fi
rootfs="$work/busybox"
mkdir -p "$rootfs"/{bin,sbin,etc,tmp,root,proc,sys,dev,usr/bin,usr/sbin,var}
chmod 1777 "$rootfs/tmp"
cp /bin/busybox "$rootfs/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$rootfs/etc/group"
tar --numeric-owner --owner=0 --group=0 --mtime='@0' --sort=name -C "$rootfs" -cf "$work/busybox.tar" .
"$kiln" import "$work/busybox.tar" busybox:latest

if [ "${2:-}" = "--debian" ]; then
  # The host's resolver and name are copied in for the bootstrap: an image must not carry them.
  mmdebstrap --variant=minbase --format=tar \
    --customize-hook='rm -f "$1/etc/resolv.conf" "$1/etc/hostname"' \
    bookworm "$work/debian.tar"
  "$kiln" import "$work/debian.tar" debian:bookworm
fi
