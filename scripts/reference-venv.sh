#!/usr/bin/env bash
# Creates (once) a Python venv with a reference package the tests run against for real,
# and prints the path of its python.
#
#   scripts/reference-venv.sh            model-signing 1.1.1 (+ pyopenssl for its certificate flow)
#   scripts/reference-venv.sh 0.2.0      model-signing 0.2.0, the release whose bundles NGC and
#                                        others shipped; it needs the sigstore of its time (3.5.3):
#                                        with today's sigstore its imports fail.
#   scripts/reference-venv.sh llama-cpp  llama-cpp-python 0.3.36 with its OpenAI-compatible
#                                        server, the live demo's real inference server. It is
#                                        built from source (llama.cpp, C++): several minutes on
#                                        2 cores the first time, cached after.
#   scripts/reference-venv.sh openai     the official openai Python client 3.63.0, which the
#                                        TLS tests drive against a gateway over https.
set -euo pipefail
cache="${MODELGATE_CACHE:-$HOME/.cache/modelgate}"
version="${1:-1.1.1}"
case "$version" in
  1.1.1) packages=('model-signing==1.1.1' pyopenssl); check='import model_signing, OpenSSL' ;;
  0.2.0) packages=('model-signing==0.2.0' 'sigstore==3.5.3'); check='from model_signing.signing import in_toto' ;;
  llama-cpp) packages=('llama-cpp-python[server]==0.3.36'); check='import llama_cpp.server.app' ;;
  openai) packages=('openai==3.63.0'); check='import openai' ;;
  *) echo "reference-venv.sh: unknown version $version (1.1.1, 0.2.0, llama-cpp or openai)" >&2; exit 2 ;;
esac
case "$version" in
  llama-cpp) venv="$cache/venv-llama-cpp-python-0.3.36" ;;
  openai) venv="$cache/venv-openai-3.63.0" ;;
  *) venv="$cache/venv-model-signing-$version" ;;
esac
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "$check" 2>/dev/null; then
  mkdir -p "$cache"
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  # llama.cpp: both cores, and code for any x86-64 (not this CPU's extensions only).
  CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" \
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${packages[@]}" >&2
fi
echo "$venv/bin/python"
