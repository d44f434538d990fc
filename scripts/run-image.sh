#!/usr/bin/env bash
# Runs an image from an OCI archive once with runc, as a user of the image would: umoci unpacks the image tagged
# NAME (its org.opencontainers.image.ref.name, the tag alone: `latest`) into a runtime bundle (its entrypoint,
# command, env and user), runc runs it with no terminal.
# Usage: scripts/run-image.sh ARCHIVE NAME
set -euo pipefail
archive=${1:?usage: run-image.sh ARCHIVE NAME}
name=${2:?usage: run-image.sh ARCHIVE NAME}
export PATH="$PATH:/usr/sbin:/sbin"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/layout"
tar -C "$work/layout" -xf "$archive"
umoci unpack --image "$work/layout:$name" "$work/bundle" >/dev/null
sed -i 's/"terminal": *true/"terminal": false/' "$work/bundle/config.json"
(cd "$work/bundle" && runc run "kiln-run-$$")
