#!/usr/bin/env bash
# Cold FROM and cold COPY beside what the disk gives anyone at that moment, printed as a markdown table (median,
# min, max over REPS runs). Two builds, both with `--no-cache` after kiln's snapshots and cache are reset, so the
# base image's layer is unpacked and the context copied every time:
#   from — `FROM debian:bookworm` (a minbase made by mmdebstrap, imported into kiln's store) + `RUN true`;
#   copy — `FROM busybox` + `COPY . /ctx` of a context of FILES files (a source tree: nested directories, sizes
#          from 100 B to 64 KiB, most of them small).
# Beside each: buildah (its base image pulled beforehand, `build --no-cache`), and `cp -a` of the same tree (the
# unpacked Debian root, the context) into a fresh directory: the floor the disk allows in that minute. Creating files
# varies run to run on an ext4 without a journal: for every new inode the allocator skips, one by one, the free
# inodes of the group freed in the last minute (five while their inode table is unwritten; `recently_deleted` in a
# profile), so a tree made where another was just deleted costs ~1 ms a file. Only figures taken in the same run,
# beside `cp -a`, compare. Every row starts after a `sync` (see bench/lib.sh).
# The order of the tools rotates from run to run, so no tool always follows another's writes.
# State is deleted between runs (COLDIO_RESET=delete, the default: the disk stays as busy as a CI machine's) or
# moved aside until the end (COLDIO_RESET=aside).
# Before/after: KILN_BIN=path measures that binary instead of a fresh release build, and KILN_BIN_B=path adds a
# second kiln column measured in the same runs (e.g. main's binary beside a branch's); KILN_NAME and KILN_NAME_B
# name the two columns.
# Usage (as root): bench/coldio.sh [REPS] [FILES] — needs buildah, mmdebstrap (and the Debian mirror), bc, GNU time.
# Runs where BENCH_LOOP_GIB says (default: empty, i.e. /var/tmp on the root filesystem; e.g. 16 for a fresh loop ext4).
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-10}
files=${2:-20000}
reset_mode=${COLDIO_RESET:-delete}
export BENCH_LOOP_GIB=${BENCH_LOOP_GIB-}
source bench/lib.sh
setup_bench coldio
[ -n "${KILN_BIN:-}" ] && kiln=$(realpath "$KILN_BIN")
kiln_b=
[ -n "${KILN_BIN_B:-}" ] && kiln_b=$(realpath "$KILN_BIN_B")
bstore=(--root "$work/buildah-root" --runroot "$work/buildah-run" --storage-driver overlay)
trap 'buildah "${bstore[@]}" rm --all >/dev/null 2>&1 || true; buildah "${bstore[@]}" umount --all >/dev/null 2>&1 || true; cleanup_work' EXIT

# Base images: busybox and Debian in kiln's store (root a), the same store copied for the second binary (root b),
# and both images in buildah's storage through kiln's OCI export.
export KILN_ROOT=$work/root-a
bash scripts/base-images.sh "$kiln" --debian >/dev/null 2>"$work/base-images.log" ||
  { cat "$work/base-images.log" >&2; exit 1; }
for image in busybox debian:bookworm; do
  mkdir -p "$work/base"
  printf 'FROM %s\n' "$image" > "$work/base/Dockerfile"
  "$kiln" build --progress=quiet -o "type=oci,dest=$work/base.oci.tar" "$work/base"
  buildah "${bstore[@]}" tag "$(buildah "${bstore[@]}" pull -q "oci-archive:$work/base.oci.tar")" \
    "docker.io/library/$image"
done
if [ -n "$kiln_b" ]; then mkdir -p "$work/root-b" && cp -a "$work/root-a/store" "$work/root-b/store"; fi
# The unpacked Debian root, for the `cp -a` floor of the from build.
mkdir -p "$work/debian-tree"
"$kiln" build --progress=quiet -o "type=local,dest=$work/debian-tree" "$work/base"

mkdir -p "$work/from" "$work/copy/src"
printf 'FROM debian:bookworm\nRUN true\n' > "$work/from/Dockerfile"
python3 - "$work/copy/src" "$files" <<'PY'
import os, random, sys
d, n = sys.argv[1], int(sys.argv[2])
r = random.Random(29)
for i in range(n):
    sub = os.path.join(d, f"m{i % 40:02d}", f"p{(i // 40) % 12:02d}")
    os.makedirs(sub, exist_ok=True)
    with open(os.path.join(sub, f"f{i}.{r.choice(['rs', 'py', 'c', 'h', 'json', 'md'])}"), "wb") as f:
        f.write(r.randbytes(int(100 * 640 ** r.random() ** 2)))
PY
printf 'FROM busybox\nCOPY . /ctx\n' > "$work/copy/Dockerfile"
tree_of() { if [ "$1" = from ]; then echo "$work/debian-tree"; else echo "$work/copy"; fi; }

resets=0
# Empties what a cold build must not find: kiln's snapshots, cache and stat cache, buildah's built images and
# working containers, the last copy.
reset_state() {
  resets=$((resets + 1))
  local gone=("$work/cp-out")
  for r in root-a root-b; do
    for d in snapshots cache statcache cachemounts work store/lazy; do gone+=("$work/$r/$d"); done
  done
  if [ "$reset_mode" = aside ]; then
    mkdir -p "$work/aside/$resets"
    local i=0
    for g in "${gone[@]}"; do
      i=$((i + 1))
      if [ -e "$g" ]; then mv "$g" "$work/aside/$resets/$i"; fi
    done
  else
    rm -rf "${gone[@]}"
  fi
  buildah "${bstore[@]}" rm --all >/dev/null 2>&1 || true
  buildah "${bstore[@]}" rmi coldio >/dev/null 2>&1 || true
}

run_tool() {
  local case=$1 tool=$2 ctx=$work/$1
  case $tool in
    kiln) measure "$case-kiln" env KILN_ROOT="$work/root-a" "$kiln" build --progress=quiet --no-cache "$ctx" ;;
    kiln_b) measure "$case-kiln_b" env KILN_ROOT="$work/root-b" "$kiln_b" build --progress=quiet --no-cache "$ctx" ;;
    buildah) measure "$case-buildah" buildah "${bstore[@]}" build -q --no-cache --isolation oci -t coldio "$ctx" ;;
    cp) measure "$case-cp" cp -a "$(tree_of "$case")" "$work/cp-out" ;;
  esac
}

tools=(kiln buildah cp)
[ -n "$kiln_b" ] && tools=(kiln kiln_b buildah cp)
for case in from copy; do
  for i in $(seq "$reps"); do
    reset_state
    n=${#tools[@]}
    for j in $(seq 0 $((n - 1))); do run_tool "$case" "${tools[$(((i + j) % n))]}"; done
  done
done

# stat NAME: "median min max" of the seconds of $work/NAME.
stat() {
  if [ ! -f "$work/$1" ]; then echo "- - -"; return; fi
  printf '%.2f %.2f %.2f' "$(col "$1" 1)" "$(awk '{print $1}' "$work/$1" | sort -n | head -1)" \
    "$(awk '{print $1}' "$work/$1" | sort -n | tail -1)"
}
cell() { local s; read -r -a s <<< "$(stat "$1")"; echo "${s[0]} (${s[1]}–${s[2]})"; }
ratio() { printf '%.2f' "$(echo "$(col "$1" 1) / $(col "$2" 1)" | bc -l)"; }
name_a=${KILN_NAME:-kiln}
name_b=${KILN_NAME_B:-kiln B}
where=$(df --output=source,fstype "$work" | tail -1 | tr -s ' ')
echo "$reps runs each on $where; seconds: median (min–max)"
echo
if [ -n "$kiln_b" ]; then
  echo "| build | $name_a | $name_b | buildah | cp -a of the tree | $name_a/cp | $name_b/cp | $name_a/buildah |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
else
  echo "| build | kiln | buildah | cp -a of the tree | kiln/cp | kiln/buildah |"
  echo "| --- | --- | --- | --- | --- | --- |"
fi
for case in from copy; do
  label="FROM debian:bookworm + RUN true"
  [ "$case" = copy ] && label="FROM busybox + COPY of $files files"
  if [ -n "$kiln_b" ]; then
    echo "| $label | $(cell "$case-kiln") | $(cell "$case-kiln_b") | $(cell "$case-buildah") | $(cell "$case-cp") | $(ratio "$case-kiln" "$case-cp") | $(ratio "$case-kiln_b" "$case-cp") | $(ratio "$case-kiln" "$case-buildah") |"
  else
    echo "| $label | $(cell "$case-kiln") | $(cell "$case-buildah") | $(cell "$case-cp") | $(ratio "$case-kiln" "$case-cp") | $(ratio "$case-kiln" "$case-buildah") |"
  fi
done
if [ -n "${COLDIO_RAW:-}" ]; then
  for f in "$work"/from-* "$work"/copy-*; do echo "$(basename "$f"): $(awk '{printf "%s ", $1}' "$f")"; done
fi
