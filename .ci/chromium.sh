#!/usr/bin/env bash
# Make sure headless Chromium is installed: the Flower dashboard system test
# (tests/system/test_flower.py) drives it. Used by `make test`; safe to re-run.
# Debian's own packages, so nothing is downloaded outside the package manager.
set -euo pipefail

say() { printf '[chromium] %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if command -v chromium >/dev/null 2>&1; then
  say "$(chromium --version 2>/dev/null | head -n 1)"
  exit 0
fi
say "installing chromium and chromium-driver (apt-get)"
as_root apt-get update -qq
DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium chromium-driver >/dev/null
say "$(chromium --version 2>/dev/null | head -n 1)"
