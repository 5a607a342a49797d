#!/usr/bin/env bash
# The reliability battery's long runs (docs/reliability.md), one store at a
# time, against the servers scripts/services.sh starts. Extra arguments go to
# every run (e.g. -seed=42 -keep).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

stop() { scripts/services.sh stop || true; }
trap stop EXIT
scripts/services.sh start
eval "$(scripts/services.sh env)"

bin=$(mktemp -d)/torture.test
go -C torture test -c -o "$bin" .
for s in redis postgres postgres-ttl redis-restart; do
	"$bin" -test.run TestTorture -test.v -test.timeout 30m -store="$s" -clients=8 -duration=60s -fault-every=1.5s "$@"
done
"$bin" -test.run TestTorture -test.v -test.timeout 30m -store=etcd -clients=8 -duration=200s -fault-every=3s "$@"
