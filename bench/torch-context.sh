# Shared by bench/torch.sh and bench/buildpush.sh (sourced from the repository's root, after `set -euo pipefail`):
# downloads the wheelhouse once, sets up the bench ($work, $kiln, a kiln root and a buildah storage under it),
# imports the Debian base into both, and writes the torch context into $ctx with its Dockerfile.
wheels=${TORCH_WHEELS:-/var/tmp/kiln-wheelhouse}
if ! ls "$wheels"/torch-2.7.1-*.whl >/dev/null 2>&1; then
  mkdir -p "$wheels"
  cert=()
  [ -n "${PIP_CERT:-}" ] && cert=(--cert "$PIP_CERT")
  python3 -m pip download -q "${cert[@]}" --only-binary=:all: --python-version 3.11 \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    -d "$wheels" torch==2.7.1
fi
source bench/lib.sh
setup_bench torch
setup_base_for_both debian

ctx=$work/torch
mkdir -p "$ctx"
mkdir -p "$ctx/wheels"
# Hard links when the wheelhouse is on the same filesystem, else a copy (the loop filesystem is another one).
cp -al "$wheels/." "$ctx/wheels/" 2>/dev/null || cp -a "$wheels/." "$ctx/wheels/"
cat > "$ctx/Dockerfile" <<'EOF'
FROM debian:bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
RUN --mount=type=bind,source=wheels,target=/wheels \
    /opt/venv/bin/pip install --disable-pip-version-check --no-index --find-links /wheels torch==2.7.1
COPY app.py /opt/app.py
CMD ["/opt/venv/bin/python", "/opt/app.py"]
EOF
printf 'import torch\nprint(torch.__version__)\n' > "$ctx/app.py"
# Files changed within 2 s of being hashed are not remembered by their stat (git's racy entries; see
# solver/src/contenthash): a context copied right before the cold build would be hashed again by the next build.
sleep 3
# reset_tools: both tools without the torch image or any step of it (the Debian base stays).
reset_tools() {
  rm -rf "$KILN_ROOT"/{snapshots,cache,statcache,cachemounts,work} "$KILN_ROOT/store/lazy" "$KILN_ROOT/store/layers"
  buildah "${bstore[@]}" rmi --force torch:latest >/dev/null 2>&1 || true
  buildah "${bstore[@]}" rmi --prune >/dev/null 2>&1 || true
}
