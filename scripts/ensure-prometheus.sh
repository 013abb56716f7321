#!/usr/bin/env bash
# Prometheus, Alertmanager and the blackbox exporter from Debian (the prometheus check's tests start their own
# instances on free loopback ports with config files in a temp folder; nothing here starts a daemon).
set -euo pipefail
want=(prometheus prometheus-alertmanager prometheus-blackbox-exporter)
bins=(/usr/bin/prometheus /usr/bin/prometheus-alertmanager /usr/bin/prometheus-blackbox-exporter)
missing=()
for i in "${!want[@]}"; do [[ -x "${bins[$i]}" ]] || missing+=("${want[$i]}"); done
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "prometheus: installing ${missing[*]} from Debian"
  export DEBIAN_FRONTEND=noninteractive
  # policy-rc.d 101: the packages' own services stay stopped (tests run instances of their own)
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [[ ! -e "$policy" ]]; then printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && own_policy=1; fi
  apt-get -o DPkg::Lock::Timeout=300 update -qq && apt-get -o DPkg::Lock::Timeout=300 install -y -qq "${missing[@]}" >/dev/null
  if [[ "$own_policy" == 1 ]]; then rm -f "$policy"; fi
fi
echo "prometheus: $(/usr/bin/prometheus --version 2>&1 | head -n1 | cut -d' ' -f1-3)," \
     "alertmanager $(/usr/bin/prometheus-alertmanager --version 2>&1 | head -n1 | cut -d' ' -f3)," \
     "blackbox exporter $(/usr/bin/prometheus-blackbox-exporter --version 2>&1 | head -n1 | cut -d' ' -f3)"
