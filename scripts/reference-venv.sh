#!/usr/bin/env bash
# Creates (once) a Python venv with the reference OpenSSF model-signing package, and
# prints the path of its python. The interoperability tests run against it.
#
#   scripts/reference-venv.sh          model-signing 1.1.1 (+ pyopenssl for its certificate flow)
#   scripts/reference-venv.sh 0.2.0    model-signing 0.2.0, the release whose bundles NGC and
#                                      others shipped; it needs the sigstore of its time (3.5.3):
#                                      with today's sigstore its imports fail.
set -euo pipefail
cache="${MODELGATE_CACHE:-$HOME/.cache/modelgate}"
version="${1:-1.1.1}"
case "$version" in
  1.1.1) packages=('model-signing==1.1.1' pyopenssl); check='import model_signing, OpenSSL' ;;
  0.2.0) packages=('model-signing==0.2.0' 'sigstore==3.5.3'); check='from model_signing.signing import in_toto' ;;
  *) echo "reference-venv.sh: unknown version $version (1.1.1 or 0.2.0)" >&2; exit 2 ;;
esac
venv="$cache/venv-model-signing-$version"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "$check" 2>/dev/null; then
  mkdir -p "$cache"
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${packages[@]}" >&2
fi
echo "$venv/bin/python"
