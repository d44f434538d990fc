#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit, conformance and end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."
# BuildKit's conformance data: ../shared (CI) or fetched once into conformance-data/ when the network allows; without
# it the tests that need it say SKIPPED, and are listed once more at the end.
bash scripts/conformance-data.sh
rm -f target/conformance-skipped.txt
skipped_summary() {
  if [ -s target/conformance-skipped.txt ]; then
    echo
    echo "$(wc -l < target/conformance-skipped.txt) conformance test(s) SKIPPED, not run:"
    cat target/conformance-skipped.txt
  fi
}
trap skipped_summary EXIT
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
# The builds, their limits, crashes and networks once more with runc running the same specs: both runtimes must
# behave alike.
KILN_RUNTIME=runc cargo test --locked -p kiln --test e2e -- build:: network:: lifecycle:: security::a_step_cannot
