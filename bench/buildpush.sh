#!/usr/bin/env bash
# A cold build pushed by the same command, against the cold build alone: the torch image (bench/torch-context.sh)
# built from nothing by `kiln build --push` to a fresh repository of a loopback registry — with compression during
# the build (engine/src/early.rs: finished layers, and big files while their step still writes them) and with it
# off (KILN_EARLY_COMPRESSION=0: the export compresses and streams every layer) — beside kiln's cold build into its
# store, and buildah's build then push. Prints each row's median and its ratio to kiln's cold build.
# Usage (as root): bench/buildpush.sh [REPS]   — needs what bench/torch.sh needs. BUILDPUSH_TOOLS="kiln" skips
# buildah's row.
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-1}
tools=${BUILDPUSH_TOOLS:-kiln buildah}
export BENCH_LOOP_GIB=${BENCH_LOOP_GIB-48}
source bench/torch-context.sh
# Each row echoed as measured, with kiln's lines about compression during the build.
say() {
  measure_and_say "$@"
  grep -h "compressed while\|MiB of it used" "$work/err" >&2 || true
}
for i in $(seq "$reps"); do
  reset_tools
  say k-cold "$kiln" build --progress=plain -t torch:latest "$ctx"
  reset_tools
  start_registry
  say k-early "$kiln" build --progress=plain --provenance=false -t "$host/bench/kiln:e$i" --push "$ctx"
  stop_registry
  reset_tools
  start_registry
  say k-late env KILN_EARLY_COMPRESSION=0 "$kiln" build --progress=plain --provenance=false \
    -t "$host/bench/kiln:l$i" --push "$ctx"
  stop_registry
  if [[ " $tools " == *" buildah "* ]]; then
    reset_tools
    start_registry
    say b-buildpush sh -c 'buildah $1 build --layers --isolation oci -t torch:latest "$2" >/dev/null &&
      buildah $1 push --tls-verify=false torch:latest "docker://$3/bench/buildah:bp"' _ "${bstore[*]}" "$ctx" "$host"
    stop_registry
  fi
  rm -rf "$work/reg"
done
cold=$(col k-cold 1)
echo "| torch, from nothing | seconds (median of $reps) | / kiln's cold build | kiln's own peak RSS (MiB) |"
echo "| --- | --- | --- | --- |"
for r in "k-cold:kiln build (into the store)" "k-early:kiln build --push" \
  "k-late:kiln build --push, KILN_EARLY_COMPRESSION=0" "b-buildpush:buildah build, then push"; do
  name=${r%%:*}
  [ -f "$work/$name" ] || continue
  t=$(col "$name" 1)
  printf '| %s | %.1f | %.2f | %d |\n' "${r#*:}" "$t" "$(echo "$t / $cold" | bc -l)" "$(( $(col "$name" 3 | cut -d. -f1) / 1024 ))"
done
