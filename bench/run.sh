#!/usr/bin/env bash
# Benchmarks kiln beside buildah on this machine and prints a markdown table (medians of REPS runs).
# Cases: hello (examples/hello); a context of 20,000 small files plus one 300 MiB random file copied with
# `COPY . /app`, with a RUN after it; four independent CPU-bound stages. Scenarios: cold build (empty root/storage),
# unchanged rebuild, touch-only rebuild, one file changed; then each case's image exported to an OCI archive and
# pushed to a loopback registry (Debian's docker-registry, fresh storage for every push). Peak RSS from GNU time.
# Usage (as root): bench/run.sh [REPS]   — needs buildah, docker-registry, bc and GNU time.
# Runs on a loop-mounted journalled ext4 of BENCH_LOOP_GIB GiB (default 24, sparse); BENCH_LOOP_GIB= runs in /var/tmp.
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-3}
# On a fresh journalled ext4 by default (see setup_bench); BENCH_LOOP_GIB= (empty) runs on /var/tmp as it is.
export BENCH_LOOP_GIB=${BENCH_LOOP_GIB-24}
source bench/lib.sh
setup_bench bench
setup_busybox_for_both
trap 'stop_registry; buildah "${bstore[@]}" rm --all >/dev/null 2>&1 || true; buildah "${bstore[@]}" umount --all >/dev/null 2>&1 || true; cleanup_work' EXIT


kiln_build() { "$kiln" build --progress=quiet -t bench:latest "$1"; }
buildah_build() { buildah "${bstore[@]}" build --layers --isolation oci -t bench:latest "$1"; }

make_cases() {
  mkdir -p "$work/cases/hello" "$work/cases/bigctx" "$work/cases/cpu"
  cp -r examples/hello/. "$work/cases/hello/"
  local big=$work/cases/bigctx
  mkdir -p "$big/files"
  python3 - "$big/files" <<'PY'
import os, random, sys
d = sys.argv[1]
r = random.Random(42)
for i in range(20000):
    sub = os.path.join(d, f"{i // 1000:02d}")
    os.makedirs(sub, exist_ok=True)
    with open(os.path.join(sub, f"f{i}.txt"), "wb") as f:
        f.write(r.randbytes(r.randint(1024, 4096)))
PY
  head -c $((300 << 20)) /dev/urandom > "$big/big.bin"
  printf 'FROM busybox\nCOPY . /app\nRUN ls /app | wc -l\n' > "$big/Dockerfile"
  local cpu=$work/cases/cpu
  {
    for s in 1 2 3 4; do
      printf 'FROM busybox AS s%s\nRUN i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done; echo %s > /out\n' "$s" "$s"
    done
    printf 'FROM busybox\n'
    for s in 1 2 3 4; do printf 'COPY --from=s%s /out /out%s\n' "$s" "$s"; done
  } > "$cpu/Dockerfile"
}

# A cold build starts from empty state, but the old state is moved aside, not deleted: this machine's root
# filesystem is ext4 without a journal, where creating files within minutes of deleting tens of thousands of others
# is ~4x slower (ext4 skips recently deleted inodes one by one: `recently_deleted` in a profile). Deleting between
# repetitions measured that aftermath, not the builders. Everything moved aside goes with $work at exit.
resets=0
reset_tools() {
  resets=$((resets + 1))
  mkdir -p "$work/aside/$resets"
  for d in snapshots cache statcache cachemounts work; do
    if [ -e "$KILN_ROOT/$d" ]; then mv "$KILN_ROOT/$d" "$work/aside/$resets/$d"; fi
  done
  buildah "${bstore[@]}" rm --all >/dev/null 2>&1 || true
  buildah "${bstore[@]}" umount --all >/dev/null 2>&1 || true
  bstore=(--root "$work/buildah-root.$resets" --runroot "$work/buildah-run.$resets" --storage-driver overlay)
  buildah "${bstore[@]}" pull -q "oci-archive:$work/busybox.oci.tar" >/dev/null
  buildah "${bstore[@]}" tag "$(buildah "${bstore[@]}" images -q | head -1)" docker.io/library/busybox:latest
}

make_cases
echo "| case | scenario | kiln (s) | buildah (s) | kiln/buildah | kiln peak RSS (MiB) |"
echo "| --- | --- | --- | --- | --- | --- |"
for case in hello bigctx cpu; do
  ctx=$work/cases/$case
  touch_file=$ctx/Dockerfile
  change_file=$ctx/Dockerfile
  [ "$case" = hello ] && touch_file=$ctx/greeting.txt && change_file=$ctx/greeting.txt
  [ "$case" = bigctx ] && touch_file=$ctx/files/05/f5000.txt && change_file=$ctx/files/05/f5001.txt
  for scenario in cold unchanged touch changed; do
    for _ in $(seq "$reps"); do
      if [ "$scenario" = cold ]; then reset_tools; else kiln_build "$ctx" >/dev/null 2>&1; buildah_build "$ctx" >/dev/null 2>&1; fi
      case $scenario in
        touch) touch "$touch_file" ;;
        changed) [ "$case" = cpu ] && printf '# change %s\n' "$RANDOM" >> "$change_file" || printf 'x%s' "$RANDOM" >> "$change_file" ;;
      esac
      measure "$case-$scenario-kiln" "$kiln" build --progress=quiet -t bench:latest "$ctx"
      case $scenario in
        touch) touch "$touch_file" ;;
        changed) [ "$case" = cpu ] && printf '# change %s\n' "$RANDOM" >> "$change_file" || printf 'x%s' "$RANDOM" >> "$change_file" ;;
      esac
      measure "$case-$scenario-buildah" buildah "${bstore[@]}" build --layers --isolation oci -t bench:latest "$ctx"
    done
    km=$(col "$case-$scenario-kiln" 1); bm=$(col "$case-$scenario-buildah" 1); kr=$(col "$case-$scenario-kiln" 2)
    printf '| %s | %s | %.2f | %.2f | %.2f | %d |\n' "$case" "$scenario" "$km" "$bm" "$(echo "$km / $bm" | bc -l)" \
      "$((${kr%.*} / 1024))"
  done
done

# Export and push of each case's image: to an OCI archive with gzip, and to a loopback registry with fresh storage
# for every push (so every layer is uploaded). kiln's memo of compressed layers is cleared before each run so every
# run compresses, as buildah's does.
echo
echo "| case | scenario | kiln (s) | buildah (s) | kiln/buildah | kiln peak RSS (MiB) | buildah peak RSS (MiB) |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for case in hello bigctx cpu; do
  ctx=$work/cases/$case
  kiln_build "$ctx" >/dev/null 2>&1
  buildah_build "$ctx" >/dev/null 2>&1
  for _ in $(seq "$reps"); do
    rm -rf "$KILN_ROOT/store/layers" "$work/k.tar" "$work/b.tar"
    measure "$case-export-kiln" "$kiln" build --progress=quiet -o "type=oci,dest=$work/k.tar" "$ctx"
    measure "$case-export-buildah" buildah "${bstore[@]}" push bench:latest "oci-archive:$work/b.tar"
    rm -rf "$KILN_ROOT/store/layers"
    start_registry
    measure "$case-push-kiln" "$kiln" push bench:latest "$host/bench/$case:1"
    start_registry
    measure "$case-push-buildah" buildah "${bstore[@]}" push --tls-verify=false bench:latest "docker://$host/bench/$case:1"
    if [ "$case" = bigctx ]; then
      # The registry's own floor: the layers already compressed, uploaded again to empty storage by kiln, and the
      # largest of them by curl in one PUT. A push to one registry keeps no compressed copy in the store (README),
      # so an unmeasured push to two names first leaves them there.
      start_registry
      "$kiln" build --progress=quiet -t "$host/keep/a:1" -t "$host/keep/b:1" --push "$ctx" >/dev/null 2>&1
      start_registry
      measure floor-kiln "$kiln" push bench:latest "$host/bench/floor:1"
      start_registry
      measure floor-curl env host="$host" bash -c "$(declare -f put_blob); put_blob \"\$1\"" _ \
        "$(ls -S "$KILN_ROOT"/store/blobs/sha256/* | head -1)"
    fi
  done
  for sc in export push; do
    km=$(col "$case-$sc-kiln" 1); bm=$(col "$case-$sc-buildah" 1)
    kr=$(col "$case-$sc-kiln" 2); br=$(col "$case-$sc-buildah" 2)
    printf '| %s | %s | %.2f | %.2f | %.2f | %d | %d |\n' "$case" "$sc" "$km" "$bm" "$(echo "$km / $bm" | bc -l)" \
      "$((${kr%.*} / 1024))" "$((${br%.*} / 1024))"
  done
done
stop_registry

echo
echo "| bigctx push, layers already compressed (the registry's floor) | seconds | / buildah's push |"
echo "| --- | --- | --- |"
bm=$(col bigctx-push-buildah 1)
for f in kiln curl; do
  m=$(col "floor-$f" 1)
  printf '| %s | %.2f | %.2f |\n' "$f" "$m" "$(echo "$m / $bm" | bc -l)"
done
