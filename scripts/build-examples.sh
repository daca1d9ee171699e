#!/usr/bin/env bash
# Builds the example pages into examples/dist (embedded into tusgate by
# go:embed). Installs the locked npm packages only when the lockfile changed.
set -euo pipefail
cd "$(dirname "$0")/../examples"
stamp=node_modules/.lock-stamp
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json "$stamp"
fi
npm run --silent build
