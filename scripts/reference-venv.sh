#!/usr/bin/env bash
# Creates (once) a Python venv with the reference OpenSSF model-signing package, and
# prints the path of its python. The interoperability tests run against it.
set -euo pipefail
cache="${MODELGATE_CACHE:-$HOME/.cache/modelgate}"
venv="$cache/venv-model-signing-1.1.1"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import model_signing, OpenSSL' 2>/dev/null; then
  mkdir -p "$cache"
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'model-signing==1.1.1' pyopenssl >&2
fi
echo "$venv/bin/python"
