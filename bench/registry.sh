#!/usr/bin/env bash
# Push and pull of a large image through a loopback registry (Debian's docker-registry, fresh storage for every
# run), kiln beside buildah and skopeo, printed as a markdown table of medians over REPS alternating runs, with
# peak RSS. The image: FROM scratch plus one layer of SIZE_MIB MiB, half random bytes, half base64 text.
# Scenarios: push (kiln compresses its uncompressed store layer on the first push only; for every measured run its
# compression memo is dropped, so each kiln push compresses too, as buildah's does), a second push of the same
# image to the same registry (nothing to upload), and pull into empty storage.
# Usage (as root): bench/registry.sh [REPS] [SIZE_MIB]  — needs buildah, skopeo, docker-registry, GNU time, bc.
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-3}
size=${2:-2048}
source bench/lib.sh
setup_bench regbench
trap 'stop_registry; buildah --root "$work/b-root" --runroot "$work/b-run" rm --all >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
bstore=(--root "$work/b-root" --runroot "$work/b-run" --storage-driver overlay)


# The image content.
mkdir -p "$work/ctx"
half=$((size / 2))
head -c $((half << 20)) /dev/urandom > "$work/ctx/random.bin"
head -c $(((size - half) * 3 / 4 << 20)) /dev/urandom | base64 > "$work/ctx/text.txt"
printf 'FROM scratch\nCOPY . /data\n' > "$work/ctx/Dockerfile"
export KILN_ROOT=$work/k-root
"$kiln" build --progress=quiet -t bench:1 "$work/ctx"
buildah "${bstore[@]}" build --layers -q -t bench:1 "$work/ctx" >/dev/null


for i in $(seq "$reps"); do
  for tool in kiln buildah skopeo; do
    start_registry
    case $tool in
      kiln)
        rm -f "$KILN_ROOT"/store/layers/conv-*.json
        measure kiln-push "$kiln" push bench:1 "$host/bench/kiln:1"
        measure kiln-repush "$kiln" push bench:1 "$host/bench/kiln:1"
        rm -rf "$work/k-pull"
        measure kiln-pull env KILN_ROOT="$work/k-pull" "$kiln" pull "$host/bench/kiln:1"
        ;;
      buildah)
        measure buildah-push buildah "${bstore[@]}" push --tls-verify=false bench:1 "docker://$host/bench/buildah:1"
        measure buildah-repush buildah "${bstore[@]}" push --tls-verify=false bench:1 "docker://$host/bench/buildah:1"
        rm -rf "$work/b2-root" "$work/b2-run"
        measure buildah-pull buildah --root "$work/b2-root" --runroot "$work/b2-run" --storage-driver overlay pull --tls-verify=false "docker://$host/bench/buildah:1"
        buildah --root "$work/b2-root" --runroot "$work/b2-run" rmi --all >/dev/null 2>&1 || true
        ;;
      skopeo)
        # skopeo copies kiln's pushed-format image from an OCI layout (already compressed: upload only).
        if [ ! -d "$work/oci" ]; then "$kiln" build --progress=quiet -o "type=oci,dest=$work/oci,tar=false" "$work/ctx"; fi
        measure skopeo-push skopeo copy -q --dest-tls-verify=false "oci:$work/oci" "docker://$host/bench/skopeo:1"
        measure skopeo-repush skopeo copy -q --dest-tls-verify=false "oci:$work/oci" "docker://$host/bench/skopeo:1"
        rm -rf "$work/s-pull"
        measure skopeo-pull skopeo copy -q --src-tls-verify=false "docker://$host/bench/skopeo:1" "oci:$work/s-pull:x"
        ;;
    esac
  done
done
stop_registry

echo
echo "Image: one layer of $size MiB (half random, half base64 text), loopback registry, medians of $reps runs."
echo
echo "| scenario | kiln s | buildah s | skopeo s | kiln/buildah | kiln peak RSS MiB | buildah peak RSS MiB |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for sc in push repush pull; do
  k=$(col "kiln-$sc" 1); b=$(col "buildah-$sc" 1); s=$(col "skopeo-$sc" 1)
  kr=$(col "kiln-$sc" 2); br=$(col "buildah-$sc" 2)
  printf '| %s | %.2f | %.2f | %.2f | %.2f | %d | %d |\n' "$sc" "$k" "$b" "$s" "$(echo "$k / $b" | bc -l)" \
    "$((${kr%.*} / 1024))" "$((${br%.*} / 1024))"
done
