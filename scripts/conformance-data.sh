#!/usr/bin/env bash
# Makes BuildKit's conformance data (its parser fixtures, shell-expansion cases and image goldens, at the commit
# kiln's conformance tests were written against) available to the tests on a fresh clone: nothing to do when
# $KILN_SHARED_DIR/conformance or ../shared/conformance (what CI provides) holds it or it was fetched before;
# otherwise it is downloaded from GitHub into conformance-data/conformance (git-ignored). Without network access it
# says so and exits 0: the tests that need the data then report themselves SKIPPED (scripts/test.sh lists them).
set -euo pipefail
cd "$(dirname "$0")/.."

COMMIT=73ed6825c4b7569379ef89df0aedcdbe64473d31
DEST=conformance-data/conformance

if [ -n "${KILN_SHARED_DIR:-}" ]; then
  [ -f "$KILN_SHARED_DIR/conformance/README.md" ] && exit 0
  echo "conformance-data: KILN_SHARED_DIR=$KILN_SHARED_DIR holds no conformance/README.md" >&2
  exit 1
fi
[ -f ../shared/conformance/README.md ] && exit 0
[ -f "$DEST/README.md" ] && exit 0

# KILN_CONFORMANCE_URL: a mirror of the same tarball (a .tar.gz of the repository at COMMIT, top directory
# buildkit-COMMIT/), for machines that reach GitHub only through one.
url="${KILN_CONFORMANCE_URL:-https://codeload.github.com/moby/buildkit/tar.gz/$COMMIT}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "conformance-data: fetching BuildKit's test data at $COMMIT from $url" >&2
if ! curl -fsSL --max-time 300 -o "$tmp/buildkit.tar.gz" "$url"; then
  echo "conformance-data: could not download $url (no network?): the conformance tests will be SKIPPED" >&2
  exit 0
fi
top="buildkit-$COMMIT"
mkdir -p "$tmp/out/buildkit"
tar -xzf "$tmp/buildkit.tar.gz" -C "$tmp/out/buildkit" --strip-components=1 \
  "$top/LICENSE" \
  "$top/frontend/dockerfile/parser/testfiles" \
  "$top/frontend/dockerfile/parser/testfiles-negative" \
  "$top/frontend/dockerfile/parser/testfile-line" \
  "$top/frontend/dockerfile/shell/envVarTest" \
  "$top/frontend/dockerfile/shell/wordsTest" \
  "$top/client/testdata/compatibility"
cat > "$tmp/out/README.md" <<README
# Conformance data taken from BuildKit's own test suite

Fetched by scripts/conformance-data.sh from moby/buildkit at commit \`$COMMIT\`: its files, unmodified, under
the Apache-2.0 licence (\`buildkit/LICENSE\`), at their repository paths below \`buildkit/\`.
README
mkdir -p "$(dirname "$DEST")"
rm -rf "$DEST"
mv "$tmp/out" "$DEST"
echo "conformance-data: BuildKit's test data is in $DEST" >&2
