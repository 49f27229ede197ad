#!/usr/bin/env bash
# Installs what cowvol needs on a Debian machine and builds it (run as root).
# Node.js >= 20 must already be on the machine (Debian's own nodejs is older).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' 2>/dev/null; then
  echo "setup: cowvol needs Node.js 20 or newer (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# fuse3/libfuse3-dev: the native FUSE addon; fio: benchmarks and verify tests;
# e2fsprogs/xfsprogs/util-linux: mkfs, fstrim and losetup for volumes;
# debootstrap/systemd-container: the test that runs the unit under a real systemd.
apt-get install -y -qq --no-install-recommends \
  build-essential python3 pkg-config fuse3 libfuse3-dev fio e2fsprogs xfsprogs util-linux \
  debootstrap systemd-container >/dev/null
# Builds native/ (node-gyp) and dist/ (tsc) through the install and prepare scripts.
npm ci --no-audit --no-fund
