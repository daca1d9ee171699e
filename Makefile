# Conveniences; the README's commands are the scripts themselves, so a
# machine without make works too.
.PHONY: run test build

run:
	bash scripts/run.sh

test:
	bash scripts/test.sh

build:
	CGO_ENABLED=0 go build -trimpath -o bin/tusgate ./cmd/tusgate
