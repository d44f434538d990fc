#!/usr/bin/env bash
# Export and import of a mode=max build cache through a loopback registry (Debian's docker-registry, fresh storage
# for every run), printed as a markdown table of medians over REPS runs. The build: the bigctx case of
# bench/run.sh (FILES small files of 1–4 KiB plus one BIG_MIB MiB random file, `COPY . /app`, then a RUN).
# export = a warm rebuild (every step cached) with `--cache-to type=registry,mode=max` minus the same rebuild
# without it; import = a build in an empty root with `--cache-from` (no step runs; the base image is pulled too).
# Usage (as root): bench/cache.sh [REPS] [FILES] [BIG_MIB] — needs docker-registry, GNU time, bc.
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-3}
files=${2:-20000}
big=${3:-300}
export PATH="$PATH:/usr/sbin:/sbin"
cargo build --release --locked -q
kiln=$PWD/target/release/kiln
work=$(mktemp -d /var/tmp/kiln-cachebench.XXXXXX)
source bench/lib.sh
trap 'stop_registry; rm -rf "$work"' EXIT

mkdir -p "$work/ctx/files"
python3 - "$work/ctx/files" "$files" <<'PY'
import os, random, sys
d, n = sys.argv[1], int(sys.argv[2])
r = random.Random(7)
for i in range(n):
    with open(os.path.join(d, f"f{i:05}.txt"), "wb") as f:
        f.write(os.urandom(r.randint(1024, 4096)))
PY
head -c $((big << 20)) /dev/urandom > "$work/ctx/big.bin"
export KILN_ROOT=$work/a-root
bash scripts/base-images.sh "$kiln" >/dev/null

for i in $(seq "$reps"); do
  start_registry
  KILN_ROOT=$work/a-root "$kiln" push busybox "$host/busybox:latest" >/dev/null 2>&1
  printf 'FROM %s/busybox:latest\nCOPY . /app\nRUN ls /app | wc -l > /count\n' "$host" > "$work/ctx/Dockerfile"
  rm -rf "$work/a-root/cache" "$work/a-root/snapshots" "$work/a-root/store/layers"
  KILN_ROOT=$work/a-root "$kiln" build --progress=quiet "$work/ctx" 2>/dev/null
  measure warm env KILN_ROOT="$work/a-root" "$kiln" build --progress=quiet "$work/ctx"
  measure export env KILN_ROOT="$work/a-root" "$kiln" build --progress=quiet \
    --cache-to "type=registry,ref=$host/cache:bench,mode=max" "$work/ctx"
  rm -rf "$work/b-root"
  measure import env KILN_ROOT="$work/b-root" "$kiln" build --progress=quiet \
    --cache-from "$host/cache:bench" "$work/ctx"
done

warm=$(col warm 1)
echo "| scenario | kiln s | kiln peak RSS MiB |"
echo "| --- | --- | --- |"
printf '| warm rebuild, no cache export | %.2f | %d |\n' "$warm" "$(( $(col warm 2) / 1024 ))"
printf '| warm rebuild + export mode=max (export alone: %.2f s) | %.2f | %d |\n' \
  "$(echo "$(col export 1) - $warm" | bc)" "$(col export 1)" "$(( $(col export 2) / 1024 ))"
printf '| empty root, --cache-from (no step runs) | %.2f | %d |\n' "$(col import 1)" "$(( $(col import 2) / 1024 ))"
