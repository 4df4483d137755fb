#!/usr/bin/env bash
# Runs every test of the workspace, including the interoperability tests against the
# reference model-signing package and the live demo in front of a real llama.cpp server
# (each installed into a cached venv on first run).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${MODELGATE_CACHE:-$HOME/.cache/modelgate}/target}"
MODELGATE_REFERENCE_PYTHON="$(scripts/reference-venv.sh)"
MODELGATE_REFERENCE_V02_PYTHON="$(scripts/reference-venv.sh 0.2.0)"
# The live demo's llama.cpp server (llama-cpp-python, built from source once).
MODELGATE_LLAMA_PYTHON="$(scripts/reference-venv.sh llama-cpp)"
export MODELGATE_REFERENCE_PYTHON MODELGATE_REFERENCE_V02_PYTHON MODELGATE_LLAMA_PYTHON
# Interop tests fail rather than skip when the reference is missing.
export MODELGATE_REQUIRE_INTEROP=1
# The browser tests' npm packages (pinned by the lockfile); Chromium itself is
# Debian's (/usr/bin/chromium), which .ci/run installs.
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
fi
# The PostgreSQL tests run against a real server: a throwaway one unless
# MODELGATE_POSTGRES_URL names one (they fail, never skip, without it).
pg_dir=""
if [ -z "${MODELGATE_POSTGRES_URL:-}" ]; then
  read -r MODELGATE_POSTGRES_URL pg_dir < <(scripts/postgres.sh start)
  export MODELGATE_POSTGRES_URL
fi
log="$(mktemp)"
trap 'rm -f "$log"; if [ -n "$pg_dir" ]; then scripts/postgres.sh stop "$pg_dir"; fi' EXIT
cargo test --workspace --release "$@" 2>&1 | tee "$log"
# One closing line for the whole run: cargo prints one per test binary, and the last
# is often an empty doc-test run.
awk '/^test result:/ {p += $4; f += $6} END {printf "%d passed, %d failed\n", p, f; exit (f > 0)}' "$log"
