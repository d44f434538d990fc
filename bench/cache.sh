#!/usr/bin/env bash
# Export and import of a mode=max build cache through a loopback registry (Debian's docker-registry, fresh storage
# for every run), printed as a markdown table of medians over REPS runs. The build: the bigctx case of
# bench/run.sh (FILES small files of 1–4 KiB plus one BIG_MIB MiB random file, `COPY . /app`, then a RUN).
# export = a warm rebuild (every step cached) with `--cache-to type=registry,mode=max` minus the same rebuild
# without it; import = a build in an empty root with `--cache-from` (no step runs; the base image is pulled too).
# Inline cache rows: a warm rebuild pushed with its cache inline, then an empty root building with `--cache-from`
# that image — kiln beside BuildKit (the one inside Debian's dockerd, `docker build` with BUILDKIT_INLINE_CACHE=1,
# a fresh daemon state for the import) when dockerd is installed. BuildKit's `--cache-to type=registry` needs buildx
# and its moby/buildkit image, neither of which Debian ships, so that row has no BuildKit figure.
# Usage (as root): bench/cache.sh [REPS] [FILES] [BIG_MIB] — needs docker-registry, GNU time, bc; docker.io for
# the BuildKit column.
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-3}
files=${2:-20000}
big=${3:-300}
source bench/lib.sh
setup_bench cachebench
# Debian's docker.io CLI (its `docker build` drives the daemon's own BuildKit; a newer CLI would want buildx).
docker_cli=/usr/bin/docker
bk=0
if command -v dockerd >/dev/null && [ -x "$docker_cli" ]; then bk=1; fi
dk_pid=
stop_dockerd() { if [ -n "$dk_pid" ]; then kill "$dk_pid" 2>/dev/null || true; wait "$dk_pid" 2>/dev/null || true; fi; dk_pid=; }
# A dockerd with empty state under $work/dk (no bridge, no iptables: builds use the host's network).
start_dockerd() {
  stop_dockerd
  rm -rf "$work/dk"
  mkdir -p "$work/dk"
  dockerd --data-root "$work/dk/data" --exec-root "$work/dk/x" --pidfile "$work/dk/pid" -H "unix://$work/dk/sock" \
    --bridge=none --iptables=false --ip-masq=false >"$work/dk/log" 2>&1 &
  dk_pid=$!
  for _ in $(seq 100); do docker info >/dev/null 2>&1 && return; sleep 0.2; done
  echo "dockerd did not start: $(tail -3 "$work/dk/log")" >&2; exit 1
}
docker() { DOCKER_HOST="unix://$work/dk/sock" DOCKER_BUILDKIT=1 "$docker_cli" "$@"; }
export -f docker
export docker_cli work
trap 'stop_dockerd; stop_registry; rm -rf "$work"' EXIT

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
  measure inline env KILN_ROOT="$work/a-root" "$kiln" build --progress=quiet \
    --cache-to type=inline --push -t "$host/kiln-app:1" "$work/ctx"
  rm -rf "$work/b-root"
  measure inline_import env KILN_ROOT="$work/b-root" "$kiln" build --progress=quiet \
    --cache-from "$host/kiln-app:1" "$work/ctx"
  if [ "$bk" = 1 ]; then
    start_dockerd
    bkbuild="docker build -q --network=host --build-arg BUILDKIT_INLINE_CACHE=1 -t $host/bk-app:1 $work/ctx"
    bash -c "$bkbuild" >/dev/null
    measure bk_warm bash -c "$bkbuild"
    measure bk_inline bash -c "$bkbuild && docker push -q $host/bk-app:1"
    start_dockerd
    measure bk_inline_import bash -c "docker build -q --network=host --cache-from $host/bk-app:1 $work/ctx"
    stop_dockerd
  fi
done

warm=$(col warm 1)
mib() { local k; k=$(col "$1" 2); if [ "$k" = - ]; then echo -; else echo $(( ${k%.*} / 1024 )); fi; }
secs() { local v; v=$(col "$1" 1); if [ "$v" = - ]; then echo -; else printf '%.2f' "$v"; fi; }
ratio() { local a b; a=$(col "$1" 1); b=$(col "$2" 1); if [ "$b" = - ]; then echo -; else printf '%.2f' "$(echo "$a / $b" | bc -l)"; fi; }
echo "| scenario | kiln s | BuildKit s | kiln/BuildKit | kiln peak RSS MiB |"
echo "| --- | --- | --- | --- | --- |"
echo "| warm rebuild, no cache export | $(secs warm) | $(secs bk_warm) | $(ratio warm bk_warm) | $(mib warm) |"
printf '| warm rebuild + registry export mode=max (export alone: %.2f s) | %s | n/a | | %s |\n' \
  "$(echo "$(col export 1) - $warm" | bc)" "$(secs export)" "$(mib export)"
echo "| empty root, --cache-from registry cache (no step runs) | $(secs import) | n/a | | $(mib import) |"
echo "| warm rebuild + push with inline cache | $(secs inline) | $(secs bk_inline) | $(ratio inline bk_inline) | $(mib inline) |"
echo "| empty root, --cache-from the pushed image (no step runs) | $(secs inline_import) | $(secs bk_inline_import) | $(ratio inline_import bk_inline_import) | $(mib inline_import) |"
