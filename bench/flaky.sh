#!/usr/bin/env bash
# A large push over a link that drops: kiln beside buildah, each pushing the same image to a loopback registry
# (Debian's docker-registry, fresh storage every run) directly, through the tests' request-buffering proxy
# (tests/src/bin/fault-proxy.rs, as nginx buffers uploads) with no faults, and through it cutting the upload
# connection three times mid-blob (when 100, 250 and 400 MiB of upload bodies have gone through it). Prints a
# markdown table of medians over REPS runs and each tool's dropped/direct ratio (issue #29: within 1.2×).
# The image: busybox plus one RUN layer of SIZE_MIB MiB, half random bytes, half repeated text; every kiln push
# compresses (its compression memo is dropped), as buildah's does. kiln resumes each blob where the registry says it
# stands (a drop costs at most one 4 MiB chunk); buildah begins the push again (`--retry`, 3 by default).
# Usage (as root): bench/flaky.sh [REPS] [SIZE_MIB]  — needs buildah, docker-registry, GNU time, bc.
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-3}
size=${2:-1024}
cuts=${CUTS:-100m:250m:400m}
source bench/lib.sh
setup_bench flaky
cargo build --release --locked -q -p kiln-tests --bin fault-proxy
proxy_bin=$PWD/target/release/fault-proxy
setup_busybox_for_both
trap 'stop_proxy; stop_registry; buildah "${bstore[@]}" rm --all >/dev/null 2>&1 || true; buildah "${bstore[@]}" umount --all >/dev/null 2>&1 || true; cleanup_work' EXIT

proxy_pid=
stop_proxy() { if [ -n "$proxy_pid" ]; then kill "$proxy_pid" 2>/dev/null || true; wait "$proxy_pid" 2>/dev/null || true; fi; proxy_pid=; }
# start_proxy PLAN: a fresh fault proxy in front of the registry; its host:port in $phost.
start_proxy() {
  stop_proxy
  "$proxy_bin" "$host" "$1" > "$work/proxy.out" 2> "$work/proxy.err" &
  proxy_pid=$!
  for _ in $(seq 100); do [ -s "$work/proxy.out" ] && break; sleep 0.05; done
  phost=$(head -1 "$work/proxy.out")
}

mkdir -p "$work/ctx"
half=$((size / 2))
printf 'FROM busybox\nRUN head -c %dm /dev/urandom > /random.bin && yes "kiln pushes over a link that drops" | head -c %dm > /text.txt\n' \
  "$half" "$((size - half))" > "$work/ctx/Dockerfile"
"$kiln" build --progress=quiet -t flaky:1 "$work/ctx"
buildah "${bstore[@]}" build --layers -q -t flaky:1 "$work/ctx" >/dev/null

for i in $(seq "$reps"); do
  for mode in direct clean dropped; do
    for tool in kiln buildah; do
      start_registry
      dest=$host
      case $mode in
        clean) start_proxy none; dest=$phost ;;
        dropped) start_proxy "cut-at=$cuts"; dest=$phost ;;
      esac
      case $tool in
        kiln)
          rm -f "$KILN_ROOT"/store/layers/conv-*.json
          measure "kiln-$mode" "$kiln" push flaky:1 "$dest/bench/kiln:1" ;;
        buildah)
          measure "buildah-$mode" buildah "${bstore[@]}" push --tls-verify=false flaky:1 "docker://$dest/bench/buildah:1" ;;
      esac
      if [ "$mode" != direct ]; then
        echo "$tool $mode: $(tail -1 "$work/proxy.err")" >&2
      fi
      stop_proxy
    done
  done
done
stop_registry

echo
echo "Image: busybox + one RUN layer of $size MiB (half random, half repeated text), pushed to a loopback registry;"
echo "dropped = through the request-buffering fault proxy, upload connection cut at $cuts of upload bytes."
echo "Medians of $reps runs."
echo
echo "| push | kiln s | buildah s | kiln/buildah |"
echo "| --- | --- | --- | --- |"
for mode in direct clean dropped; do
  k=$(col "kiln-$mode" 1); b=$(col "buildah-$mode" 1)
  printf '| %s | %.2f | %.2f | %.2f |\n' "$mode" "$k" "$b" "$(echo "$k / $b" | bc -l)"
done
kd=$(col kiln-direct 1); kx=$(col kiln-dropped 1); bd=$(col buildah-direct 1); bx=$(col buildah-dropped 1)
printf '| dropped/direct | %.2f | %.2f | |\n' "$(echo "$kx / $kd" | bc -l)" "$(echo "$bx / $bd" | bc -l)"
