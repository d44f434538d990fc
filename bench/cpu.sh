#!/usr/bin/env bash
# Four independent CPU-bound stages against the machine's CPU limit, as the solver issue measures it: each stage
# counts in sh for about STAGE seconds of CPU (calibrated here: one stage built alone), a final stage copies their
# outputs. On C cores the best any builder can do is 4 × (one stage) / C. Prints a markdown table: kiln and buildah
# (same Dockerfile, --no-cache, alternating), the limit, and each tool's ratio to it.
# Usage (as root): bench/cpu.sh [REPS] [STAGE_SECONDS]   — needs buildah, bc and GNU time.
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-3}
stage=${2:-4}
source bench/lib.sh
setup_bench cpu
setup_busybox_for_both
cores=$(nproc)

count_stage() { printf 'FROM busybox AS s%s\nRUN i=0; while [ $i -lt %s ]; do i=$((i+1)); done; echo %s > /out\n' "$1" "$2" "$1"; }

# Calibrate: how many iterations one stage needs for $stage seconds, from a short timed run.
one=$work/one
mkdir -p "$one"
probe=200000
count_stage 1 "$probe" > "$one/Dockerfile"
s=$(date +%s.%N)
"$kiln" build --progress=quiet --no-cache "$one" >/dev/null
e=$(date +%s.%N)
n=$(echo "$probe * $stage / ($e - $s)" | bc)

four=$work/four
mkdir -p "$four"
{
  for i in 1 2 3 4; do count_stage "$i" "$n"; done
  printf 'FROM busybox\n'
  for i in 1 2 3 4; do printf 'COPY --from=s%s /out /out%s\n' "$i" "$i"; done
} > "$four/Dockerfile"
count_stage 1 "$n" > "$one/Dockerfile"

for _ in $(seq "$reps"); do
  measure single "$kiln" build --progress=quiet --no-cache "$one"
  measure kiln "$kiln" build --progress=quiet --no-cache "$four"
  measure buildah buildah "${bstore[@]}" build --no-cache --layers --isolation oci -t cpu:latest "$four"
done

single=$(col single 1)
limit=$(echo "scale=2; 4 * $single / $cores" | bc)
echo "| four CPU stages ($n iterations each, $cores cores) | seconds | / CPU limit ($limit s = 4 × $single s / $cores) |"
echo "| --- | --- | --- |"
for v in kiln buildah; do
  printf '| %s | %.2f | %.2f |\n' "$v" "$(col "$v" 1)" "$(echo "scale=3; $(col "$v" 1) / $limit" | bc)"
done
