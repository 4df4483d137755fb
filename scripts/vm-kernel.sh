#!/usr/bin/env bash
# Prints a directory holding a Debian cloud kernel (vmlinuz, its config, and
# loop.ko) for the fs-verity test's throwaway VM: this machine's own kernel
# may lack CONFIG_FS_VERITY, Debian's has it. Downloaded once, then cached.
set -euo pipefail
dir="${MODELGATE_CACHE:-$HOME/.cache/modelgate}/vm-kernel"
if [ ! -f "$dir/vmlinuz" ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  pkg="$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')"
  if [ -z "$pkg" ]; then
    $sudo apt-get update -qq >&2
    pkg="$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')"
  fi
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  chmod 755 "$tmp"
  (cd "$tmp" && apt-get download -qq "$pkg" >&2 2>/dev/null)
  dpkg -x "$tmp"/*.deb "$tmp/x"
  grep -q '^CONFIG_FS_VERITY=y' "$tmp"/x/boot/config-* || { echo "$pkg has no CONFIG_FS_VERITY" >&2; exit 1; }
  mkdir -p "$dir.new"
  cp "$tmp"/x/boot/vmlinuz-* "$dir.new/vmlinuz"
  cp "$tmp"/x/boot/config-* "$dir.new/config"
  cp "$(find "$tmp/x/lib/modules" -name loop.ko | head -1)" "$dir.new/loop.ko"
  rm -rf "$dir" && mv "$dir.new" "$dir"
fi
echo "$dir"
