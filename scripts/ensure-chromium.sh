#!/usr/bin/env bash
# Debian's Chromium for Playwright (`playwright install` cannot download browsers on these machines).
set -euo pipefail
if [[ -x /usr/bin/chromium ]]; then echo "chromium: $(/usr/bin/chromium --version 2>/dev/null | head -n1)"; exit 0; fi
echo "chromium: installing from Debian"
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=300 update -qq && apt-get -o DPkg::Lock::Timeout=300 install -y -qq chromium >/dev/null
echo "chromium: $(/usr/bin/chromium --version 2>/dev/null | head -n1)"
