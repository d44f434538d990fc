#!/usr/bin/env bash
# The torch case: a PyTorch + CUDA 12 environment at real size (torch 2.7.1 and its nvidia-* wheels, ~2.8 GB of
# wheels that install to ~5.5 GB, one layer of ~5 GB) on the Debian base, built by kiln and by buildah in the same
# run. The wheelhouse is downloaded once with `pip download` (CPython 3.11, manylinux x86_64) into
# $TORCH_WHEELS (default /var/tmp/kiln-wheelhouse), outside the repository, and hard-linked into the context, where
# `RUN --mount=type=bind,source=wheels` gives it to `pip install --no-index`. Rows: cold build, unchanged rebuild,
# app file changed, push to a fresh repository of a loopback registry, repush after an app change (only the small
# layer goes up), export to an OCI archive (gzip), pull into an empty root/storage, then export and push with zstd,
# and a cold build pushed by the same command;
# peak RSS of each (kiln's own, from KILN_PEAK_RSS, beside GNU time's, which counts the RUN steps kiln waits for).
# Usage (as root): bench/torch.sh [REPS]   — needs buildah, mmdebstrap, docker-registry, bc, GNU time, and pip
# (with network access to PyPI the first time; pass a CA bundle in PIP_CERT where HTTPS is re-signed).
# Runs on a loop-mounted journalled ext4 of BENCH_LOOP_GIB GiB (default 48, sparse; ~30 GiB are written).
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-1}
export BENCH_LOOP_GIB=${BENCH_LOOP_GIB-48}
source bench/torch-context.sh

kcmd=("$kiln" build --progress=quiet -t torch:latest "$ctx")
bcmd=(buildah "${bstore[@]}" build --layers --isolation oci -t torch:latest "$ctx")
change_app() { printf '# change %s\n' "$RANDOM" >> "$ctx/app.py"; }

echo "| torch | kiln (s) | buildah (s) | kiln/buildah | kiln's own peak RSS (MiB) | kiln and its steps, peak RSS (MiB) | buildah peak RSS (MiB) |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for _ in $(seq "$reps"); do
  reset_tools
  measure_and_say k-cold "${kcmd[@]}"
  measure_and_say b-cold "${bcmd[@]}"
  measure_and_say k-unchanged "${kcmd[@]}"
  measure_and_say b-unchanged "${bcmd[@]}"
  change_app
  measure_and_say k-changed "${kcmd[@]}"
  change_app
  measure_and_say b-changed "${bcmd[@]}"
  "${kcmd[@]}" >/dev/null 2>&1
  "${bcmd[@]}" >/dev/null 2>&1

  # Push to a fresh repository; then an app change and a repush (the torch layer is there already).
  start_registry
  rm -f "$KILN_ROOT"/store/layers/*.json
  c0=$(reg_cpu)
  measure_and_say k-push "$kiln" push torch:latest "$host/bench/kiln:1"
  c1=$(reg_cpu)
  measure_and_say b-push buildah "${bstore[@]}" push --tls-verify=false torch:latest "docker://$host/bench/buildah:1"
  c2=$(reg_cpu)
  echo "registry CPU during the push: kiln's $(echo "$c1 - $c0" | bc) s, buildah's $(echo "$c2 - $c1" | bc) s" >&2
  change_app
  "${kcmd[@]}" >/dev/null 2>&1
  "${bcmd[@]}" >/dev/null 2>&1
  measure_and_say k-repush "$kiln" push torch:latest "$host/bench/kiln:1"
  measure_and_say b-repush buildah "${bstore[@]}" push --tls-verify=false torch:latest "docker://$host/bench/buildah:1"

  # Pull into an empty root / storage.
  rm -rf "$work/pulled-k" "$work/pulled-b" "$work/pulled-b-run"
  # kiln's pull stores the blobs; the FROM that follows unpacks them (buildah's pull does both at once).
  mkdir -p "$work/from-pulled"
  printf 'FROM %s\n' "$host/bench/kiln:1" > "$work/from-pulled/Dockerfile"
  measure_and_say k-pull env KILN_ROOT="$work/pulled-k" sh -c \
    '"$1" pull "$2" && "$1" build --progress=quiet "$3"' _ "$kiln" "$host/bench/kiln:1" "$work/from-pulled"
  rm -rf "$work/pulled-k"
  buildah_pull_fresh b-pull "$host/bench/buildah:1"
  stop_registry
  rm -rf "$work/reg"

  # Export to an OCI archive with gzip layers, each layer compressed anew.
  rm -rf "$KILN_ROOT/store/layers" "$work/k.tar" "$work/b.tar"
  measure_and_say k-export "$kiln" build --progress=quiet -o "type=oci,dest=$work/k.tar" "$ctx"
  measure_and_say b-export buildah "${bstore[@]}" push torch:latest "oci-archive:$work/b.tar"
  ksize=$(size_mib "$work/k.tar"); bsize=$(size_mib "$work/b.tar")
  # kiln's SBOM of the torch image (into the store: no layer is compressed, so the row is the SBOM's cost), and
  # whether it lists every wheel of the wheelhouse with its version.
  measure_and_say k-sbom "$kiln" build --progress=quiet --sbom=true -t torch:sbom "$ctx"
  "$kiln" inspect --attestations torch:sbom > "$work/sbom.json"
  python3 - "$work/sbom.json" "$ctx/wheels" >&2 <<'PY'
import json, os, re, sys
doc = json.load(open(sys.argv[1]))
listed = set()
def walk(v):
    if isinstance(v, dict):
        if v.get("spdxVersion"):
            for p in v.get("packages", []):
                listed.add((re.sub(r"[-_.]+", "-", p.get("name", "").lower()), p.get("versionInfo")))
        for x in v.values():
            walk(x)
    elif isinstance(v, list):
        for x in v:
            walk(x)
walk(doc)
wheels = set()
for f in os.listdir(sys.argv[2]):
    if f.endswith(".whl"):
        name, version = f.split("-")[:2]
        wheels.add((re.sub(r"[-_.]+", "-", name.lower()), version))
missing = sorted(wheels - listed)
print(f"SBOM: {len(listed)} packages listed; {len(wheels) - len(missing)} of {len(wheels)} wheels listed with their version; missing: {missing}")
PY
  rm -f "$work/k.tar" "$work/b.tar"
  # The same with zstd (level 3, both tools' default): export, and push to a fresh repository.
  rm -rf "$KILN_ROOT/store/layers"
  measure_and_say k-export-zstd "$kiln" build --progress=quiet -o "type=oci,dest=$work/k.tar,compression=zstd" "$ctx"
  measure_and_say b-export-zstd buildah "${bstore[@]}" push --compression-format zstd torch:latest "oci-archive:$work/b.tar"
  kzsize=$(size_mib "$work/k.tar"); bzsize=$(size_mib "$work/b.tar")
  rm -f "$work/k.tar" "$work/b.tar"
  start_registry
  rm -rf "$KILN_ROOT/store/layers"
  measure_and_say k-push-zstd "$kiln" push --compression zstd torch:latest "$host/bench/kiln:z"
  measure_and_say b-push-zstd buildah "${bstore[@]}" push --tls-verify=false --compression-format zstd torch:latest "docker://$host/bench/buildah:z"
  stop_registry
  rm -rf "$work/reg"

  # A cold build pushed in the same command: kiln compresses each finished layer while later steps run
  # (engine/src/early.rs); buildah builds, then pushes.
  reset_tools
  start_registry
  measure_and_say k-buildpush "$kiln" build --progress=quiet --provenance=false -t "$host/bench/kiln:bp" --push "$ctx"
  measure_and_say b-buildpush sh -c 'buildah $1 build --layers --isolation oci -t torch:latest "$2" >/dev/null && buildah $1 push --tls-verify=false torch:latest "docker://$3/bench/buildah:bp"' \
    _ "${bstore[*]}" "$ctx" "$host"
  stop_registry
  rm -rf "$work/reg"
done
row "cold build" k-cold b-cold
row "unchanged rebuild" k-unchanged b-unchanged
row "app file changed" k-changed b-changed
row "push to a fresh repository (gzip)" k-push b-push
row "repush after an app change" k-repush b-repush
row "pull into an empty root (kiln: pull, then a FROM of it)" k-pull b-pull
row "export, OCI archive (gzip)" k-export b-export
row "export, OCI archive (zstd)" k-export-zstd b-export-zstd
row "push to a fresh repository (zstd)" k-push-zstd b-push-zstd
row "cold build and push in one command (buildah: build, then push)" k-buildpush b-buildpush
echo
echo "archive sizes (MiB): gzip kiln $ksize, buildah $bsize; zstd kiln $kzsize, buildah $bzsize"
