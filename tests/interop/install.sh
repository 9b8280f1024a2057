#!/usr/bin/env bash
# Installs the real third-party clients the interop tier drives (Debian packages).
# Idempotent: does nothing when every tool is already present.
# With arguments `TOOL=PACKAGE ...` it installs only those (make bench-check: valgrind=valgrind).
set -euo pipefail
declare -A PACKAGES=(
  [curl]=curl
  [nghttp]=nghttp2-client
  [h2load]=nghttp2-client
  [gtlsclient]=ngtcp2-client
  [haproxy]=haproxy
  [chromium]=chromium
)
if [ $# -gt 0 ]; then
  PACKAGES=()
  for pair in "$@"; do PACKAGES[${pair%%=*}]=${pair#*=}; done
fi
missing=()
for tool in "${!PACKAGES[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || missing+=("${PACKAGES[$tool]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  echo "interop: installing ${missing[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends \
    $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
fi
if [ $# -eq 0 ] && [ -x tests/interop/autobahn/setup.sh ]; then
  bash tests/interop/autobahn/setup.sh
fi
