#!/usr/bin/env bash
# Builds every example (or those named) into kiln's store and an OCI archive, then runs each image once with runc.
# hello needs the busybox base; compiled and ml-env the Debian base (made here with mmdebstrap, which needs the
# Debian mirror). ml-env's pip reaches PyPI over HTTPS: the host's CA bundle is passed as a secret, so a proxy
# that re-signs HTTPS is trusted inside the step and the bundle is never stored in the image.
# Usage (as root): scripts/examples.sh [hello|compiled|ml-env]...
set -euo pipefail
cd "$(dirname "$0")/.."
examples=("$@")
[ "${#examples[@]}" -gt 0 ] || examples=(hello compiled ml-env)
need=()
command -v mmdebstrap >/dev/null 2>&1 || need+=(mmdebstrap)
command -v umoci >/dev/null 2>&1 || need+=(umoci)
if [ "${#need[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
export PATH="$PATH:/usr/sbin:/sbin"
cargo build --release --locked -q
kiln=./target/release/kiln
export KILN_ROOT="${KILN_ROOT:-$PWD/target/kiln-root}"
# The Debian base is made once per root (a new bootstrap is a new base image, and every step on it would re-run).
if "$kiln" inspect debian:bookworm >/dev/null 2>&1; then
  bash scripts/base-images.sh "$kiln" >/dev/null
else
  bash scripts/base-images.sh "$kiln" --debian >/dev/null
fi
ca=/etc/ssl/certs/ca-certificates.crt
for ex in "${examples[@]}"; do
  extra=()
  if [ "$ex" = ml-env ] && [ -f "$ca" ]; then extra=(--secret "id=ca,src=$ca"); fi
  echo "== $ex"
  "$kiln" build --progress=plain "${extra[@]}" -t "$ex:latest" -o "type=oci,dest=target/$ex.oci.tar" "examples/$ex" 2>&1 \
    | grep -E '^#[0-9]+ \[|^kiln:|ERROR|error' || true
  bash scripts/run-image.sh "target/$ex.oci.tar" latest
done
