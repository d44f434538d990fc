#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine (as root): install what kiln's sandbox and the checks use, build
# kiln, make a busybox base image offline, build examples/hello (with RUN steps) into kiln's local store, list the
# store, export the image as an OCI archive and run it once with runc.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v runc >/dev/null 2>&1 || [ -x /usr/sbin/runc ] || need+=(runc)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v umoci >/dev/null 2>&1 || need+=(umoci)
# A RUN's default network: a namespace, a veth pair and NAT.
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || need+=(iproute2)
command -v iptables >/dev/null 2>&1 || [ -x /usr/sbin/iptables ] || need+=(iptables)
if [ "${#need[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
export PATH="$PATH:/usr/sbin:/sbin"
cargo build --release --locked
kiln=./target/release/kiln
export KILN_ROOT="${KILN_ROOT:-$PWD/target/kiln-root}"
bash scripts/base-images.sh "$kiln"
"$kiln" check examples/hello
"$kiln" build -t hello:latest -o type=oci,dest=target/hello.oci.tar examples/hello
"$kiln" images
bash scripts/run-image.sh target/hello.oci.tar latest
