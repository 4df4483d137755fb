#!/usr/bin/env bash
# Runs every test of the workspace, including the interoperability tests against the
# reference model-signing package (installed into a cached venv on first run).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${MODELGATE_CACHE:-$HOME/.cache/modelgate}/target}"
MODELGATE_REFERENCE_PYTHON="$(scripts/reference-venv.sh)"
export MODELGATE_REFERENCE_PYTHON
# Interop tests fail rather than skip when the reference is missing.
export MODELGATE_REQUIRE_INTEROP=1
cargo test --workspace --release "$@"
