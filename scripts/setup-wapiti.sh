#!/usr/bin/env bash
# wapiti3 (DAST) in a virtualenv of its own: its pins clash with ours (kubernetes' aiohttp). Idempotent: a stamp
# file records what was installed, so a second run only checks. Override the place with AEVON_WAPITI_VENV.
set -euo pipefail
cd "$(dirname "$0")/.."
want="wapiti3==3.2.3"
venv="${AEVON_WAPITI_VENV:-.aevon/tools/wapiti-venv}"
stamp="$venv/.aevon-installed"
if [[ -x "$venv/bin/wapiti" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "wapiti: up to date ($want in $venv)"; exit 0
fi
echo "wapiti: installing $want into $venv"
py="${PYTHON:-python3}"
[[ -x "$venv/bin/python" ]] || "$py" -m venv "$venv"
if [[ -x .venv/bin/uv ]]; then
  .venv/bin/uv pip install -q --python "$venv/bin/python" "$want"
else
  "$venv/bin/python" -m pip install -q "$want"
fi
"$venv/bin/wapiti" --version >/dev/null 2>&1 || { echo "wapiti: installed but does not run" >&2; exit 1; }
echo "$want" > "$stamp"
echo "wapiti: installed ($want in $venv)"
