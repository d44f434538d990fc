#!/usr/bin/env bash
# A large push over a link that drops: kiln beside buildah, each pushing the same image to a loopback registry
# (Debian's docker-registry, fresh storage every run) directly, through the tests' request-buffering proxy
# (tests/src/bin/fault-proxy.rs, as nginx buffers uploads) with no faults, and through it cutting the upload
# connection three times mid-blob (when 100, 250 and 400 MiB of upload bodies have gone through it). Prints a
# markdown table of medians over REPS runs and each tool's dropped/direct ratio (issue #29: within 1.2×).
# The image: busybox plus one RUN layer of SIZE_MIB MiB, half random bytes, half repeated text; every kiln push
# compresses (its compression memo is dropped), as buildah's does. kiln resumes each blob where the registry says it
# stands (a drop costs at most one 4 MiB chunk); buildah sends each blob in one PATCH, so a drop costs it the blob
# so far, and its `--retry` (3 by default) decides whether it begins again.
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
      # A push that fails is counted as failed (the table says how many), not measured.
      case $tool in
        kiln)
          rm -f "$KILN_ROOT"/store/layers/conv-*.json
          (measure "kiln-$mode" "$kiln" push flaky:1 "$dest/bench/kiln:1") || echo >> "$work/kiln-$mode.failed" ;;
        buildah)
          (measure "buildah-$mode" buildah "${bstore[@]}" push --tls-verify=false flaky:1 "docker://$dest/bench/buildah:1") ||
            echo >> "$work/buildah-$mode.failed" ;;
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
# cell NAME: the median seconds of NAME, with how many of its runs failed; "failed" when all did.
cell() {
  local v f=0
  v=$(col "$1" 1)
  [ -f "$work/$1.failed" ] && f=$(wc -l < "$work/$1.failed")
  if [ "$v" = - ]; then echo "failed ($f of $reps)"; return; fi
  printf '%.2f%s' "$v" "$([ "$f" -gt 0 ] && echo " ($f of $reps failed)")"
}
# ratio A B: A/B of two medians, or - when either is missing.
ratio() {
  local a b
  a=$(col "$1" 1); b=$(col "$2" 1)
  if [ "$a" = - ] || [ "$b" = - ]; then echo -; else printf '%.2f' "$(echo "$a / $b" | bc -l)"; fi
}
echo "| push | kiln s | buildah s | kiln/buildah |"
echo "| --- | --- | --- | --- |"
for mode in direct clean dropped; do
  echo "| $mode | $(cell "kiln-$mode") | $(cell "buildah-$mode") | $(ratio "kiln-$mode" "buildah-$mode") |"
done
echo "| dropped/direct | $(ratio kiln-dropped kiln-direct) | $(ratio buildah-dropped buildah-direct) | |"
