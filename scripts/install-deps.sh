#!/usr/bin/env bash
# Installs what the build and the tests need on a fresh Debian 12 machine, skipping what is already there.
#   scripts/install-deps.sh          everything (native, wasm, python, browser)
#   scripts/install-deps.sh native   only the C toolchain bits
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}

need_apt=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
want() { for p in "$@"; do have_pkg "$p" || need_apt+=("$p"); done; }

want build-essential
if [ "$what" = all ]; then
  want emscripten chromium python3-torch python3-numpy python3-sentencepiece sentencepiece \
       libopenblas0-pthread python3-matplotlib python3-jinja2
  # node/npm may come from another repository's nodejs package (which bundles npm): only install Debian's if absent.
  command -v node >/dev/null || want nodejs
  command -v npm >/dev/null || want npm
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "install-deps: apt-get install ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need_apt[@]}" >/dev/null
fi
if [ "$what" = all ] && [ -f package-lock.json ]; then
  if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    echo "install-deps: npm ci"
    npm ci --no-audit --no-fund --loglevel=error
  fi
fi
