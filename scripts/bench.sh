#!/usr/bin/env bash
# Runs the benchmark module against the real stores on loopback. Extra
# arguments go to `go test` (e.g. -bench Redis -count 10).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

stop() { scripts/services.sh stop || true; }
trap stop EXIT
# etcd keeps its data on disk for benchmarks (tests keep it in /dev/shm):
# a started etcd is left as it is, so stop the services first for this.
export DLOCK_ETCD_DISK=1
scripts/services.sh start
eval "$(scripts/services.sh env)"

go test -run '^$' -bench . -benchmem -count 1 ./backends/memlock
cd bench && go test -run '^$' -bench . -benchmem -timeout 30m ./... "$@"
