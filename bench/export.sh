#!/usr/bin/env bash
# Layer export throughput: kiln writing a gzip OCI archive of a one-layer image (FROM scratch, COPY of one file of
# SIZE_MIB MiB, half random bytes, half base64 text) beside `tar | gzip -6` and `tar | pigz -6` on the same file,
# in MB/s of uncompressed input, with peak RSS; medians of REPS runs. Then kiln's peak RSS exporting a layer of
# BIG_MIB MiB. kiln's snapshot is made once beforehand, so each run measures the export alone (the layer memo is
# dropped between runs).
# Usage (as root): bench/export.sh [REPS] [SIZE_MIB] [BIG_MIB]  — needs pigz, GNU time, bc.
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-3}
size=${2:-1024}
big=${3:-4096}
source bench/lib.sh
setup_bench exportbench
trap 'rm -rf "$work"' EXIT
export KILN_ROOT=$work/root

make_ctx() { # DIR MIB
  mkdir -p "$1"
  local half=$(($2 / 2))
  head -c $((half << 20)) /dev/urandom > "$1/random.bin"
  head -c $((($2 - half) * 3 / 4 << 20)) /dev/urandom | base64 > "$1/text.txt"
  printf 'FROM scratch\nCOPY . /data\n' > "$1/Dockerfile"
}

measure_sh() { # NAME COMMAND-LINE...: as lib.sh's measure, for a shell command line (pipes)
  local name=$1; shift
  local s e
  s=$(date +%s.%N)
  /usr/bin/time -f '%M' -o "$work/rss" bash -c "$*" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
  e=$(date +%s.%N)
  echo "$(echo "$e - $s" | bc) $(cat "$work/rss")" >> "$work/$name"
}

make_ctx "$work/ctx" "$size"
bytes=$(du -sb "$work/ctx" | cut -f1)
"$kiln" build --progress=quiet -t x "$work/ctx"
for _ in $(seq "$reps"); do
  rm -f "$KILN_ROOT"/store/layers/*.json
  measure kiln "$kiln" build --progress=quiet -o type=oci,dest=$work/out.tar $work/ctx
  measure_sh gzip "tar -C $work/ctx -cf - . | gzip -6 > $work/out.gz"
  measure_sh pigz "tar -C $work/ctx -cf - . | pigz -6 > $work/out.gz"
done

echo
echo "Layer of $size MiB (half random, half base64 text), $(nproc) cores, medians of $reps runs."
echo
echo "| exporter | seconds | MB/s (input) | peak RSS MiB |"
echo "| --- | --- | --- | --- |"
for t in kiln gzip pigz; do
  s=$(col "$t" 1); r=$(col "$t" 2)
  printf '| %s | %.2f | %.0f | %d |\n' "$t" "$s" "$(echo "$bytes / $s / 1000000" | bc -l)" "$((${r%.*} / 1024))"
done

rm -rf "$work/ctx" "$KILN_ROOT"
make_ctx "$work/big" "$big"
"$kiln" build --progress=quiet -t big "$work/big"
measure kilnbig "$kiln" build --progress=quiet -o type=oci,dest=$work/big.tar $work/big
echo
printf 'kiln exporting a %d MiB layer to an OCI archive: %.1f s, peak RSS %d MiB\n' "$big" "$(col kilnbig 1)" "$(($(col kilnbig 2 | cut -d. -f1) / 1024))"
