#!/usr/bin/env bash
# The cost of a RUN step itself: a Dockerfile of N `RUN true` steps in a chain, built with --no-cache (buildah:
# --no-cache --layers), so every step starts a sandbox, runs, and commits a snapshot, less the same build with no
# RUN at all (start-up, FROM), divided by N. Prints a markdown table of medians per RUN: kiln with its built-in runtime (default network, and --network=none), kiln with runc, buildah
# (runc, --isolation oci), and the kiln/buildah ratios; then the executor alone (executor/examples/overhead.rs:
# `/bin/true` N times in a plain busybox rootfs, no snapshots), built-in runtime beside runc.
# Usage (as root): bench/runs.sh [REPS] [N] [EXEC_N]   — needs buildah, runc, bc and GNU time.
# Runs on a loop-mounted journalled ext4 of BENCH_LOOP_GIB GiB (default 24, sparse), as bench/run.sh does: on this
# machine's unjournalled root, each step's create-and-delete churn made the next builds' inode allocation slower
# (a fresh root's 100-RUN build took 0.9, 1.2, 2.0, 1.4 s in a row). BENCH_LOOP_GIB= runs in /var/tmp.
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-3}
n=${2:-100}
exec_n=${3:-100}
export BENCH_LOOP_GIB=${BENCH_LOOP_GIB-24}
source bench/lib.sh
setup_bench runs
setup_busybox_for_both

ctx=$work/ctx
mkdir -p "$ctx"
{ echo "FROM busybox"; for i in $(seq "$n"); do echo "RUN true $i"; done; } > "$ctx/Dockerfile"
ctx0=$work/ctx0
mkdir -p "$ctx0"
echo "FROM busybox" > "$ctx0/Dockerfile"

variants=(builtin builtin-none runc buildah)
for _ in $(seq "$reps"); do
  for v in "${variants[@]}"; do
    for c in ctx ctx0; do
      case $v in
        builtin) cmd=("$kiln" build --progress=quiet --no-cache "$work/$c") ;;
        builtin-none) cmd=("$kiln" build --progress=quiet --no-cache --network=none "$work/$c") ;;
        runc) cmd=("$kiln" build --progress=quiet --no-cache --runtime=runc "$work/$c") ;;
        buildah) cmd=(buildah "${bstore[@]}" build --no-cache --layers --isolation oci -t runs:latest "$work/$c") ;;
      esac
      # Each run starts with nothing dirty: an fsync would otherwise also flush what the previous tool wrote.
      sync
      if [ "$c" = ctx ]; then measure "$v" "${cmd[@]}"; else measure "$v-base" "${cmd[@]}"; fi
    done
  done
done

per_run() { echo "scale=1; ($(col "$1" 1) - $(col "$1-base" 1)) * 1000 / $n" | bc; }
b=$(per_run buildah)
echo "| runtime | ms per RUN | build of $n RUNs (s) | build with no RUN (s) | /buildah | peak RSS (MiB) |"
echo "| --- | --- | --- | --- | --- | --- |"
for v in "${variants[@]}"; do
  ms=$(per_run "$v")
  printf '| %s | %s | %.2f | %.2f | %.2f | %d |\n' "$v" "$ms" "$(col "$v" 1)" "$(col "$v-base" 1)" \
    "$(echo "scale=3; $ms / $b" | bc)" \
    "$(( $(col "$v" 2 | cut -d. -f1) / 1024 ))"
done

cargo build --release --locked -q -p executor --example overhead
rootfs=$work/rootfs
mkdir -p "$rootfs/bin" "$rootfs/proc" "$rootfs/dev" "$rootfs/sys" "$rootfs/etc"
cp /bin/busybox "$rootfs/bin/"
ln -s busybox "$rootfs/bin/true"
echo
echo "| executor alone ($exec_n runs of /bin/true) | ms per run, default network | ms per run, --network=none |"
echo "| --- | --- | --- |"
for rt in builtin runc; do
  d=(); z=()
  for _ in $(seq "$reps"); do
    d+=("$(target/release/examples/overhead "$rootfs" "$exec_n" "$rt" default)")
    z+=("$(target/release/examples/overhead "$rootfs" "$exec_n" "$rt" none)")
  done
  echo "| $rt | $(printf '%s\n' "${d[@]}" | median) | $(printf '%s\n' "${z[@]}" | median) |"
done
