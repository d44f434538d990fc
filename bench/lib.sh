# Shared by the benchmark scripts (sourced from the repository's root): the common start (release build, work
# directory), a loopback docker-registry with fresh storage, timing with peak RSS, and medians.

# setup_bench NAME: puts the sbin directories on PATH, builds kiln (release) into $kiln, makes $work.
setup_bench() {
  export PATH="$PATH:/usr/sbin:/sbin"
  cargo build --release --locked -q
  kiln=$PWD/target/release/kiln
  work=$(mktemp -d "/var/tmp/kiln-$1.XXXXXX")
  # With BENCH_LOOP_GIB set, $work is a fresh journalled ext4 of that size (a sparse file on a loop device): this
  # machine's root filesystem has no journal, and there ext4 makes file creation several times slower for minutes
  # after any big deletion (buildah deletes its working containers after every build), so cold rows would measure
  # the other tool's cleanup. Most machines' filesystems are journalled.
  if [ -n "${BENCH_LOOP_GIB:-}" ]; then
    truncate -s "${BENCH_LOOP_GIB}G" "$work.img"
    mkfs.ext4 -q -F "$work.img"
    mount -o loop "$work.img" "$work"
  fi
}

# cleanup_work: removes $work (and unmounts and removes its loop filesystem, when it has one).
cleanup_work() {
  if mountpoint -q "$work"; then
    umount "$work" 2>/dev/null || umount -l "$work"
    rm -f "$work.img"
  fi
  rm -rf "$work"
}

# setup_base_for_both busybox|debian: kiln's base image (scripts/base-images.sh) in $KILN_ROOT (under $work), and
# the same image in a buildah storage of its own ($bstore), via an OCI archive kiln exports; the registry,
# buildah's containers and $work go at exit. setup_busybox_for_both: the busybox one.
setup_base_for_both() {
  local image=$1 flag=() ref=docker.io/library/busybox:latest
  if [ "$image" = debian ]; then flag=(--debian); image=debian:bookworm; ref=docker.io/library/debian:bookworm; fi
  trap 'stop_registry; buildah "${bstore[@]}" rm --all >/dev/null 2>&1 || true; buildah "${bstore[@]}" umount --all >/dev/null 2>&1 || true; cleanup_work' EXIT
  export KILN_ROOT=$work/kiln-root
  bstore=(--root "$work/buildah-root" --runroot "$work/buildah-run" --storage-driver overlay)
  bash scripts/base-images.sh "$kiln" "${flag[@]}" >/dev/null
  mkdir -p "$work/base"
  printf 'FROM %s\n' "$image" > "$work/base/Dockerfile"
  "$kiln" build --progress=quiet -o "type=oci,dest=$work/base.oci.tar" "$work/base"
  buildah "${bstore[@]}" pull -q "oci-archive:$work/base.oci.tar" >/dev/null
  buildah "${bstore[@]}" tag "$(buildah "${bstore[@]}" images -q | head -1)" "$ref"
  rm -f "$work/base.oci.tar"
}
setup_busybox_for_both() { setup_base_for_both busybox; }

reg_pid=
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
host=127.0.0.1:$port

stop_registry() { if [ -n "$reg_pid" ]; then kill "$reg_pid" 2>/dev/null || true; wait "$reg_pid" 2>/dev/null || true; fi; reg_pid=; }

# Starts Debian's docker-registry on $host with empty storage under $work/reg.
start_registry() {
  stop_registry
  rm -rf "$work/reg"
  mkdir -p "$work/reg"
  printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n' \
    "$work/reg/data" "$host" > "$work/reg/config.yml"
  docker-registry serve "$work/reg/config.yml" >/dev/null 2>&1 &
  reg_pid=$!
  for _ in $(seq 100); do curl -sf "http://$host/v2/" >/dev/null && return; sleep 0.1; done
  echo "registry did not start" >&2; exit 1
}

# put_blob FILE : uploads FILE (named by its sha256, as the store names blobs) to the registry at $host in one
# monolithic PUT, as no client can do with less of the registry's work.
put_blob() {
  local loc sep
  loc=$(curl -sf -D - -o /dev/null -X POST "http://$host/v2/floor/blobs/uploads/" | tr -d '\r' |
    awk 'tolower($1) == "location:" {print $2}')
  case $loc in http*) ;; *) loc=http://$host$loc ;; esac
  case $loc in *\?*) sep='&' ;; *) sep='?' ;; esac
  curl -sf -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' -T "$1" \
    "$loc${sep}digest=sha256:$(basename "$1")"
}

# measure NAME CMD... : runs CMD, appends "seconds rss_kib own_rss_kib" to $work/NAME (own: kiln's own peak, which
# GNU time's cannot tell from the largest process kiln waited for, e.g. a RUN step's). Every measure starts with nothing dirty:
# kiln fsyncs what it commits (snapshots, store blobs, archives), and on ext4 an fsync waits for the journal to
# write out everything dirty, so a kiln row measured right after buildah's unsynced hundreds of MB paid for their
# writeback (bigctx export: 3.4 s in the bench against 2.0–2.5 s by hand on the same loop ext4); buildah mounts its
# overlays with fsync=volatile and syncs nothing, so it never pays for kiln's.
measure() {
  local name=$1; shift
  local s e
  sync
  s=$(date +%s.%N)
  rm -f "$work/own-rss"
  KILN_PEAK_RSS="$work/own-rss" /usr/bin/time -f '%M' -o "$work/rss" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
  e=$(date +%s.%N)
  # Third column: kiln's own peak (KILN_PEAK_RSS, KiB) when the command was kiln, else GNU time's again.
  echo "$(echo "$e - $s" | bc) $(cat "$work/rss") $(cat "$work/own-rss" 2>/dev/null || cat "$work/rss")" >> "$work/$name"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
# col NAME N: the median of column N of $work/NAME, or - when nothing was measured.
col() { if [ -f "$work/$1" ]; then awk "{print \$$2}" "$work/$1" | median; else echo -; fi; }

# Shared by the kiln-beside-buildah tables (torch.sh, big.sh).
# measure_and_say NAME CMD...: measure, also echoed to stderr as it is made, so a run that stops early still shows
# what it measured.
measure_and_say() { measure "$@"; echo "$1: $(tail -1 "$work/$1")" >&2; }
row() { # row LABEL NAME-kiln NAME-buildah
  local k b
  k=$(col "$2" 1); b=$(col "$3" 1)
  if [ "$k" = - ] || [ "$b" = - ]; then
    echo "| $1 | $k | $b | - | - | - | - |"
    return
  fi
  printf '| %s | %.1f | %.1f | %.2f | %d | %d | %d |\n' "$1" "$k" "$b" "$(echo "$k / $b" | bc -l)" \
    "$(( $(col "$2" 3 | cut -d. -f1) / 1024 ))" "$(( $(col "$2" 2 | cut -d. -f1) / 1024 ))" \
    "$(( $(col "$3" 2 | cut -d. -f1) / 1024 ))"
}
size_mib() { echo $(( $(stat -c %s "$1") >> 20 )); }
# CPU seconds the registry has used so far (it hashes and writes every blob it receives, on the same two cores).
reg_cpu() { awk -v t="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / t}' "/proc/$reg_pid/stat"; }
# buildah_pull_fresh NAME REF: times buildah's pull of REF into an empty storage of its own, then removes it.
buildah_pull_fresh() {
  measure_and_say "$1" buildah --root "$work/pulled-b" --runroot "$work/pulled-b-run" --storage-driver overlay \
    pull -q --tls-verify=false "docker://$2"
  buildah --root "$work/pulled-b" --runroot "$work/pulled-b-run" --storage-driver overlay rmi --all >/dev/null 2>&1 || true
  rm -rf "$work/pulled-b" "$work/pulled-b-run"
}
