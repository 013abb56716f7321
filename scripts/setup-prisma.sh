#!/usr/bin/env bash
# Install the offline Prisma toolkit (providers/migrators/prisma/toolkit) with npm ci; skipped when up to date.
# Up to date = node_modules/.bin/prisma exists and the stamp records the sha256 of the current package-lock.json.
# Recipe: shared/recipes/prisma-offline/README.md (npm ci --ignore-scripts skips the failing engine download).
set -euo pipefail

toolkit="$(cd "$(dirname "${BASH_SOURCE[0]}")/../providers/migrators/prisma/toolkit" && pwd)"
stamp="$toolkit/node_modules/.aevon-lock.sha256"
want="$(sha256sum "$toolkit/package-lock.json" "$toolkit/package.json" | sha256sum | cut -d' ' -f1)"

if [[ -x "$toolkit/node_modules/.bin/prisma" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "prisma toolkit: up to date ($toolkit)"
  exit 0
fi

command -v npm >/dev/null || { echo "prisma toolkit: npm is not installed (apt-get install nodejs npm)" >&2; exit 1; }
echo "prisma toolkit: npm ci in $toolkit"
(cd "$toolkit" && npm ci --ignore-scripts --no-audit --no-fund)
# `prisma --version` would try to download the native engine: read the installed version from its package.json.
version="$(cd "$toolkit" && node -p "require('prisma/package.json').version")"
echo "$want" > "$stamp"
echo "prisma toolkit: installed prisma $version"
