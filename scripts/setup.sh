#!/usr/bin/env bash
# Installs what fundus needs on a fresh Debian 12 machine with Node.js 20: oneDNN for the native engine, libjpeg-turbo
# for fast decoding, Chromium for the viewer's end-to-end tests, redis-server and openssl for the queue's tests (they
# start their own Redis on a free loopback port; the service the package may start is not used), then the npm
# packages (which build the native addons).
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends libdnnl-dev libjpeg62-turbo-dev chromium redis-server openssl dcmtk >/dev/null
# onnxruntime-node (bench:backbones) ships its CPU binaries in the npm package; its install script would only fetch
# CUDA libraries from NuGet. package.json's allowScripts denies it; this covers npm versions that do not read that.
export ONNXRUNTIME_NODE_INSTALL=skip
npm ci --no-audit --no-fund
