#!/usr/bin/env bash
# Runs each cargo-fuzz target for a while: scripts/fuzz.sh SECONDS [TARGET...] (default: every target).
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). The corpus grows under fuzz/corpus/
# (not committed); a crash leaves its input under fuzz/artifacts/TARGET/ and makes this script fail — copy it to
# tests/corpus/fuzz/TARGET/, where the stable test suite replays every file.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:?usage: scripts/fuzz.sh SECONDS [TARGET...]}"
shift
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
failed=0
printf '| target | seconds | runs | coverage (edges) | features | corpus |\n| --- | --- | --- | --- | --- | --- |\n'
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  seeds=()
  [ -d "../tests/corpus/fuzz/$t" ] && seeds+=("../tests/corpus/fuzz/$t")
  log="$(mktemp)"
  if ! cargo +nightly fuzz run "$t" "corpus/$t" "${seeds[@]}" -- \
      -max_total_time="$secs" -rss_limit_mb=4096 -timeout=20 -print_final_stats=1 >"$log" 2>&1; then
    failed=1
    if grep -q "failed to build fuzz script" "$log"; then
      echo "$t: did not build — the log below" >&2
    else
      echo "$t: crashed — see fuzz/artifacts/$t/ and the log below" >&2
    fi
    tail -40 "$log" >&2
  fi
  line="$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true)"
  runs="$(sed -nE 's/^#([0-9]+).*/\1/p' <<<"$line")"
  cov="$(sed -nE 's/.*cov: ([0-9]+).*/\1/p' <<<"$line")"
  ft="$(sed -nE 's/.*ft: ([0-9]+).*/\1/p' <<<"$line")"
  corp="$(sed -nE 's/.*corp: ([0-9]+).*/\1/p' <<<"$line")"
  printf '| %s | %s | %s | %s | %s | %s |\n' "$t" "$secs" "${runs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}"
  rm -f "$log"
done
exit "$failed"
