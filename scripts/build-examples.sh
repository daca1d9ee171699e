#!/usr/bin/env bash
# Builds the example pages into examples/dist (embedded into tusgate by
# go:embed). Installs the locked npm packages only when the lockfile changed.
set -euo pipefail
cd "$(dirname "$0")/../examples"
# The /uppy-s3/ page has its own packages (Uppy v5) in src/uppy-s3.
for dir in . src/uppy-s3; do
  stamp=$dir/node_modules/.lock-stamp
  if [ ! -f "$stamp" ] || ! cmp -s "$dir/package-lock.json" "$stamp"; then
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$dir/package-lock.json" "$stamp"
  fi
done
npm run --silent build
