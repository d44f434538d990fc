#!/usr/bin/env bash
# The 12 GiB case: one RUN step that writes a 12 GiB layer — 6 GiB of random bytes (incompressible: wheels, model
# weights), 3 GiB of base64 text (compressible by Huffman coding alone) and 3 GiB of repeated lines (highly
# compressible), in files of 128 MiB — built, exported, pushed and pulled by kiln and by buildah, one tool after the
# other (each cleans up before the next, so the disk holds one tool's copies at a time: ~30 GiB at the peak).
# Prints a markdown table: seconds and peak RSS (kiln's own, from KILN_PEAK_RSS, and GNU time's), kiln/buildah.
# Usage (as root): bench/big.sh [REPS]   — needs buildah, docker-registry, bc and GNU time.
# Runs on a loop-mounted journalled ext4 of BENCH_LOOP_GIB GiB (default 60, sparse, trimmed between the tools;
# buildah's commit holds the layer three times: its container, the tar in $TMPDIR, the unpacked layer), as
# bench/run.sh does; buildah's temporary files go there too.
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-1}
# BIG_TOOLS="kiln" or "buildah" runs one tool's rows only (the other's columns print as -).
tools=${BIG_TOOLS:-kiln buildah}
export BENCH_LOOP_GIB=${BENCH_LOOP_GIB-60}
source bench/lib.sh
setup_bench big
# buildah stages each layer it commits in $TMPDIR (12 GiB here): on the loop filesystem too, not the root's /var/tmp.
export TMPDIR=$work/tmp
mkdir -p "$TMPDIR"
setup_busybox_for_both
trap 'stop_registry; buildah "${bstore[@]}" rm --all >/dev/null 2>&1 || true; buildah "${bstore[@]}" umount --all >/dev/null 2>&1 || true; cleanup_work' EXIT

ctx=$work/big
mkdir -p "$ctx"
cat > "$ctx/Dockerfile" <<'EOF'
FROM busybox
RUN mkdir -p /data/random /data/base64 /data/lines \
 && for i in $(seq 1 48); do head -c 134217728 /dev/urandom > /data/random/r$i; done \
 && for i in $(seq 1 24); do head -c 100663296 /dev/urandom | base64 > /data/base64/b$i; done \
 && for i in $(seq 1 24); do yes "line $i of a log that repeats itself" | head -c 134217728 > /data/lines/l$i; done
EOF

for _ in $(seq "$reps"); do
  # kiln: build, export, push, then (its build root gone) pull and FROM into an empty root.
  if [[ " $tools " == *" kiln "* ]]; then
  rm -rf "$KILN_ROOT"/{snapshots,cache,statcache,work} "$KILN_ROOT/store/lazy" "$KILN_ROOT/store/layers"
  measure_and_say k-build "$kiln" build --progress=quiet -t big:latest "$ctx"
  measure_and_say k-export "$kiln" build --progress=quiet -o "type=oci,dest=$work/k.tar" "$ctx"
  ksize=$(size_mib "$work/k.tar")
  rm -f "$work/k.tar"
  start_registry
  rm -rf "$KILN_ROOT/store/layers"
  c0=$(reg_cpu)
  measure_and_say k-push "$kiln" push big:latest "$host/bench/kiln:1"
  echo "registry CPU during kiln's push: $(echo "$(reg_cpu) - $c0" | bc) s" >&2
  rm -rf "$KILN_ROOT"/{snapshots,cache,statcache,work} "$KILN_ROOT/store/lazy" "$KILN_ROOT/store/layers"
  mkdir -p "$work/from-pulled"
  printf 'FROM %s\n' "$host/bench/kiln:1" > "$work/from-pulled/Dockerfile"
  measure_and_say k-pull env KILN_ROOT="$work/pulled-k" sh -c \
    '"$1" pull "$2" && "$1" build --progress=quiet "$3"' _ "$kiln" "$host/bench/kiln:1" "$work/from-pulled"
  rm -rf "$work/pulled-k"
  fstrim "$work" 2>/dev/null || true
  stop_registry
  rm -rf "$work/reg"
  "$kiln" rmi big:latest >/dev/null 2>&1 || true
  rm -rf "$KILN_ROOT"/{snapshots,cache,statcache,work} "$KILN_ROOT/store/lazy" "$KILN_ROOT/store/layers"
  # Give what was deleted back to the host: the loop file is sparse, and without this it keeps every block ever
  # written (kiln's rows alone write ~50 GiB over the run).
  fstrim "$work" 2>/dev/null || true
  fi

  # buildah: the same.
  if [[ " $tools " == *" buildah "* ]]; then
  measure_and_say b-build buildah "${bstore[@]}" build --layers --isolation oci -t big:latest "$ctx"
  # buildah's commit wrote the layer three times and kept one: the loop file still holds the other two.
  fstrim "$work" 2>/dev/null || true
  measure_and_say b-export buildah "${bstore[@]}" push big:latest "oci-archive:$work/b.tar"
  bsize=$(size_mib "$work/b.tar")
  rm -f "$work/b.tar"
  fstrim "$work" 2>/dev/null || true
  start_registry
  c0=$(reg_cpu)
  measure_and_say b-push buildah "${bstore[@]}" push --tls-verify=false big:latest "docker://$host/bench/buildah:1"
  echo "registry CPU during buildah's push: $(echo "$(reg_cpu) - $c0" | bc) s" >&2
  buildah "${bstore[@]}" rmi --force big:latest >/dev/null 2>&1 || true
  buildah "${bstore[@]}" rmi --prune >/dev/null 2>&1 || true
  buildah_pull_fresh b-pull "$host/bench/buildah:1"
  stop_registry
  rm -rf "$work/reg"
  fi
done
echo "| 12 GiB layer | kiln (s) | buildah (s) | kiln/buildah | kiln's own peak RSS (MiB) | kiln and its steps, peak RSS (MiB) | buildah peak RSS (MiB) |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
row "build (one RUN writing 12 GiB)" k-build b-build
row "export, OCI archive (gzip)" k-export b-export
row "push to a fresh repository (gzip)" k-push b-push
row "pull into an empty root (kiln: pull, then a FROM of it)" k-pull b-pull
echo
echo "archive sizes (MiB): kiln ${ksize:--}, buildah ${bsize:--}"
