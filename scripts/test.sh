#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit, conformance and end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
# The builds, their limits, crashes and networks once more with runc running the same specs: both runtimes must
# behave alike.
KILN_RUNTIME=runc cargo test --locked -p kiln --test e2e -- build:: network:: lifecycle:: security::a_step_cannot
