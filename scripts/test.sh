#!/usr/bin/env bash
# Runs every test of the workspace, including the interoperability tests against the
# reference model-signing package and the live demo in front of a real llama.cpp server
# (each installed into a cached venv on first run).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${MODELGATE_CACHE:-$HOME/.cache/modelgate}/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# Debian packages the tests call, installed where missing: openssl (test
# certificate chains), curl and coreutils (the documented walkthroughs),
# systemd-analyze (the example units), g++ (llama-cpp-python, the live demo's
# real inference server, builds llama.cpp from source), Chromium, Node.js and
# npm (the browser tests), PostgreSQL (scripts/postgres.sh runs a throwaway
# cluster), nginx (the replicas' caching-proxy test), SoftHSM2 and OpenSC (keys on
# a PKCS#11 token), and QEMU, a static BusyBox, cpio and fsverity (the
# fs-verity test boots a throwaway VM on a Debian kernel that has it).
missing=()
command -v openssl >/dev/null || missing+=(openssl)
command -v curl >/dev/null || missing+=(curl)
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v g++ >/dev/null || missing+=(g++)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing+=(postgresql)
[ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v softhsm2-util >/dev/null || missing+=(softhsm2)
command -v pkcs11-tool >/dev/null || missing+=(opensc)
command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
command -v cpio >/dev/null || missing+=(cpio)
command -v fsverity >/dev/null || missing+=(fsverity)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing Debian packages the tests need: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
MODELGATE_REFERENCE_PYTHON="$(scripts/reference-venv.sh)"
MODELGATE_REFERENCE_V02_PYTHON="$(scripts/reference-venv.sh 0.2.0)"
# The live demo's llama.cpp server (llama-cpp-python, built from source once).
MODELGATE_LLAMA_PYTHON="$(scripts/reference-venv.sh llama-cpp)"
# The official openai client, governed over https in the TLS tests.
MODELGATE_OPENAI_PYTHON="$(scripts/reference-venv.sh openai)"
# The fs-verity test's VM kernel (Debian's cloud kernel, downloaded once).
MODELGATE_VM_KERNEL_DIR="$(scripts/vm-kernel.sh)"
export MODELGATE_REFERENCE_PYTHON MODELGATE_REFERENCE_V02_PYTHON MODELGATE_LLAMA_PYTHON MODELGATE_OPENAI_PYTHON
export MODELGATE_VM_KERNEL_DIR
# Interop tests fail rather than skip when the reference is missing.
export MODELGATE_REQUIRE_INTEROP=1
# The browser tests' npm packages, playwright-core and axe-core, pinned by
# tests/browser/package-lock.json; Chromium itself is Debian's (/usr/bin/chromium).
echo "== npm ci (tests/browser)"
npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
# The PostgreSQL tests run against a real server: a throwaway one unless
# MODELGATE_POSTGRES_URL names one (they fail, never skip, without it).
pg_dir=""
if [ -z "${MODELGATE_POSTGRES_URL:-}" ]; then
  read -r MODELGATE_POSTGRES_URL pg_dir < <(scripts/postgres.sh start)
  export MODELGATE_POSTGRES_URL
fi
log="$(mktemp)"
trap 'rm -f "$log"; if [ -n "$pg_dir" ]; then scripts/postgres.sh stop "$pg_dir"; fi' EXIT
cargo test --workspace --release --no-fail-fast "$@" 2>&1 | tee "$log"
# One closing line for the whole run: cargo prints one per test binary, and the last
# is often an empty doc-test run.
awk '/^test result:/ {p += $4; f += $6} END {printf "%d passed, %d failed\n", p, f; exit (f > 0)}' "$log"
