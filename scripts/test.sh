#!/usr/bin/env bash
# The whole test suite, as `make test` and CI run it: start the real stores on
# loopback, check formatting and vet, run every test with -race, and stop the
# stores again — also when something fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

stop() { scripts/services.sh stop || true; }
trap stop EXIT

scripts/services.sh start
eval "$(scripts/services.sh env)"
scripts/services.sh env | sed 's/^/services: /' >&2

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change:" >&2
	echo "$unformatted" >&2
	exit 1
fi

echo "== go vet"
go vet ./...
go -C bench vet ./...
go -C torture vet ./...

echo "== go test -race"
go test -race -count=1 -timeout 15m ./... "$@"

echo "== reliability battery, short mode (see docs/reliability.md; make torture for the long runs)"
go -C torture test -race -count=1 -timeout 5m ./...
