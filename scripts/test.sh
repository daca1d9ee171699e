#!/usr/bin/env bash
# The whole test suite: installs what it needs (cached in .cache/), checks
# formatting and static analysis, then runs unit and integration tests
# against real servers (versitygw for S3). CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

bash test/tools/deps.sh
echo "== example pages (esbuild; embedded into the binary the tests build)"
bash scripts/build-examples.sh
echo "== example pages' unit tests (node --test)"
node --test examples/src/common/*.test.mjs

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files -co --exclude-standard '*.go'))
if [ -n "$unformatted" ]; then
  echo "not gofmt-formatted (run gofmt -w):"; echo "$unformatted"; exit 1
fi

echo "== go vet"
go vet ./...

echo "== staticcheck"
.cache/bin/staticcheck ./...

echo "== unit tests (race detector)"
go test -race -count=1 $(go list ./... | grep -v /test/)

echo "== integration tests (tusgate binary + versitygw)"
go test -count=1 -timeout 15m ./test/...
