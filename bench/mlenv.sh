#!/usr/bin/env bash
# The ml-env case (examples/ml-env: Debian, apt-get python3, a venv, pip install of real wheels from PyPI with a
# pip cache mount, the host CA bundle as a secret) built by kiln and by buildah on the same Debian base (made once
# with mmdebstrap, given to buildah as kiln's OCI export). Scenarios: cold (no build cache, no pip cache), unchanged
# rebuild, one file changed (check.py, copied after the pip step), export to an OCI archive. Network-bound: apt and
# pip download for real, so the cold row measures the mirror and PyPI as much as the builders.
# Usage (as root): bench/mlenv.sh [REPS]   — needs buildah, mmdebstrap, bc and GNU time, and network access.
# Runs on a loop-mounted journalled ext4 of BENCH_LOOP_GIB GiB (default 24, sparse), as bench/run.sh does.
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-1}
# On a fresh journalled ext4 by default, as bench/run.sh (see setup_bench); BENCH_LOOP_GIB= runs in /var/tmp.
export BENCH_LOOP_GIB=${BENCH_LOOP_GIB-24}
source bench/lib.sh
setup_bench mlenv
setup_base_for_both debian

ctx=$work/ml-env
cp -r examples/ml-env "$ctx"
ca=/etc/ssl/certs/ca-certificates.crt
secret=()
[ -f "$ca" ] && secret=(--secret "id=ca,src=$ca")
kcmd=("$kiln" build --progress=quiet "${secret[@]}" -t ml-env:latest "$ctx")
bcmd=(buildah "${bstore[@]}" build --layers --isolation oci "${secret[@]}" -t ml-env:latest "$ctx")
reset_tools() {
  rm -rf "$KILN_ROOT"/{snapshots,cache,statcache,cachemounts,work,downloads} "$KILN_ROOT/store/lazy"
  buildah "${bstore[@]}" rmi --force ml-env:latest >/dev/null 2>&1 || true
  buildah "${bstore[@]}" rmi --prune >/dev/null 2>&1 || true
  # buildah keeps cache mounts under its run root while it lives; a fresh one per cold run.
  rm -rf "$work/buildah-run" /var/tmp/buildah-cache-*
}

echo "| ml-env | kiln (s) | buildah (s) | kiln/buildah | kiln peak RSS (MiB) |"
echo "| --- | --- | --- | --- | --- |"
for scenario in cold unchanged changed; do
  for _ in $(seq "$reps"); do
    if [ "$scenario" = cold ]; then reset_tools; else "${kcmd[@]}" >/dev/null 2>&1; "${bcmd[@]}" >/dev/null 2>&1; fi
    # Each measure starts with nothing dirty (see bench/lib.sh): an fsync queued behind the other tool's unwritten
    # hundreds of MB measured the disk, not the builder (0.2-0.35 s of a 0.01 s rebuild).
    if [ "$scenario" = changed ]; then printf '# change %s\n' "$RANDOM" >> "$ctx/check.py"; fi
    measure "k-$scenario" "${kcmd[@]}"
    if [ "$scenario" = changed ]; then printf '# change %s\n' "$RANDOM" >> "$ctx/check.py"; fi
    measure "b-$scenario" "${bcmd[@]}"
  done
  k=$(col "k-$scenario" 1); b=$(col "b-$scenario" 1)
  printf '| %s | %.2f | %.2f | %.2f | %d |\n' "$scenario" "$k" "$b" "$(echo "$k / $b" | bc -l)" \
    "$(( $(col "k-$scenario" 2 | cut -d. -f1) / 1024 ))"
done
for _ in $(seq "$reps"); do
  rm -rf "$KILN_ROOT/store/layers" "$work/k.tar" "$work/b.tar"
  measure k-export "$kiln" build --progress=quiet "${secret[@]}" -o "type=oci,dest=$work/k.tar" "$ctx"
  measure b-export buildah "${bstore[@]}" push ml-env:latest "oci-archive:$work/b.tar"
done
k=$(col k-export 1); b=$(col b-export 1)
printf '| export (OCI archive, gzip) | %.2f | %.2f | %.2f | %d |\n' "$k" "$b" "$(echo "$k / $b" | bc -l)" \
  "$(( $(col k-export 2 | cut -d. -f1) / 1024 ))"
