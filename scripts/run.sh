#!/usr/bin/env bash
# Runs tusgate locally with its embedded defaults: uploads stored in ./data,
# the built-in development token issuer (--dev) under /dev/oidc/, and the
# example pages (Dropzone, Uppy) at http://127.0.0.1:8080/.
# Extra arguments are passed to tusgate (e.g. --listen 127.0.0.1:9090).
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v npm >/dev/null; then
  bash scripts/build-examples.sh
else
  echo "run: npm not found; serving without the example pages" >&2
fi
mkdir -p bin
go build -o bin/tusgate ./cmd/tusgate
exec ./bin/tusgate --dev "$@"
