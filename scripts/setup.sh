#!/usr/bin/env bash
# Installs what fundus needs on a fresh Debian 12 machine with Node.js 20: oneDNN for the native engine, libjpeg-turbo
# for fast decoding, Chromium for the viewer's end-to-end tests, redis-server and openssl for the queue's tests (they
# start their own Redis on a free loopback port; the service the package may start is not used), then the npm
# packages (which build the native addons).
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
APT_PACKAGES="libdnnl-dev libjpeg62-turbo-dev chromium redis-server openssl dcmtk"
# A finished set-up is not redone (the README's commands run it before every run): it is recorded with a fingerprint
# of what it depends on (this script, the npm lock, the native addon's and the compiled package's sources); a change
# to any of them, a missing apt package or FUNDUS_SETUP=force does it again.
STAMP=node_modules/.fundus-setup
fingerprint() {
  { find scripts/setup.sh package.json package-lock.json native src web/src web/index.html -type f \
      -not -path 'native/build/*' -print0 | sort -z | xargs -0 sha256sum; } | sha256sum | cut -d' ' -f1
}
if [ "${FUNDUS_SETUP:-}" != force ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(fingerprint)" ] \
  && dpkg -s $APT_PACKAGES >/dev/null 2>&1; then
  echo "fundus set-up: already done for these sources (FUNDUS_SETUP=force redoes it)"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends $APT_PACKAGES >/dev/null
# onnxruntime-node (bench:backbones) ships its CPU binaries in the npm package; its install script would only fetch
# CUDA libraries from NuGet. package.json's allowScripts denies it; this covers npm versions that do not read that.
export ONNXRUNTIME_NODE_INSTALL=skip
npm ci --no-audit --no-fund
fingerprint > "$STAMP"
