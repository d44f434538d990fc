#!/usr/bin/env bash
# Makes base images offline and imports them into kiln's store:
#   busybox  — from Debian's busybox-static (always)
#   debian   — from `mmdebstrap --variant=minbase bookworm` (only with --debian; needs the Debian mirror)
# With --push REGISTRY (e.g. 127.0.0.1:5000) each is also pushed there as REGISTRY/busybox:latest and
# REGISTRY/debian:bookworm, so builds can name them `FROM REGISTRY/...` as they would a real registry's.
# Usage: scripts/base-images.sh KILN_BINARY [--debian] [--push REGISTRY]
set -euo pipefail
kiln=${1:?usage: base-images.sh KILN_BINARY [--debian] [--push REGISTRY]}
shift
debian=0
push=
while [ $# -gt 0 ]; do
  case $1 in
    --debian) debian=1 ;;
    --push) push=${2:?--push needs a registry}; shift ;;
    *) echo "base-images.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
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
made=(busybox:latest)

if [ "$debian" = 1 ]; then
  # The host's resolver and name are copied in for the bootstrap: an image must not carry them.
  mmdebstrap --variant=minbase --format=tar \
    --customize-hook='rm -f "$1/etc/resolv.conf" "$1/etc/hostname"' \
    bookworm "$work/debian.tar"
  "$kiln" import "$work/debian.tar" debian:bookworm
  made+=(debian:bookworm)
fi

if [ -n "$push" ]; then
  for image in "${made[@]}"; do
    "$kiln" push "$image" "$push/$image"
  done
fi
