#!/usr/bin/env bash
# Runs tusgate locally with its embedded defaults: uploads stored in ./data,
# the built-in development token issuer (--dev) under /dev/oidc/.
# Extra arguments are passed to tusgate (e.g. --listen 127.0.0.1:9090).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bin
go build -o bin/tusgate ./cmd/tusgate
exec ./bin/tusgate --dev "$@"
