#!/usr/bin/env bash
# Ensure Debian's docker-registry (the CNCF distribution registry) is installed; the image gate's tests start it.
# Idempotent: does nothing when /usr/bin/docker-registry is already there.
set -euo pipefail

if [ -x /usr/bin/docker-registry ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get -o DPkg::Lock::Timeout=300 update -qq
$SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends docker-registry >/dev/null
# The package starts a system service on :5000 where an init system runs; the tests start their own instance.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  $SUDO systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi
test -x /usr/bin/docker-registry
