#!/usr/bin/env bash
# The reliability battery's long runs (docs/reliability.md), one store at a
# time, against the servers scripts/services.sh starts (the restart rows and
# etcd-cluster start private servers of their own). Extra arguments go to
# every run (e.g. -seed=42 -keep). Without -race: the short mode in CI runs
# with it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

stop() { scripts/services.sh stop || true; }
trap stop EXIT
scripts/services.sh start
eval "$(scripts/services.sh env)"

bin=$(mktemp -d)/torture.test
go -C torture test -c -o "$bin" .
run() { "$bin" -test.run TestTorture -test.v -test.timeout 30m -clients=8 -keys=16 -linearizability=120s "$@"; }
run -store=memlock -duration=90s -fault-every=2s "$@"
run -store=redis -duration=90s -fault-every=1.5s "$@"
run -store=redis-cluster -duration=100s -fault-every=2s "$@"
run -store=redis-restart -work=20ms -duration=90s -fault-every=3s "$@"
run -store=postgres -duration=120s -fault-every=1.2s "$@"
run -store=postgres-ttl -duration=120s -fault-every=1.2s "$@"
run -store=postgres-restart -work=20ms -duration=120s -fault-every=3s "$@"
run -store=etcd-cluster -duration=200s -fault-every=2s "$@"
run -store=zk -duration=120s -fault-every=1.5s "$@"
run -store=dynamodb -duration=180s -fault-every=2s "$@"

# The layers (docs/reliability.md, Layers): leader failovers, cron with
# skewed clocks, once with killed workers, httpmw with cancels and panics.
layers() { "$bin" -test.run TestLayers -test.v -test.timeout 30m -test.parallel 16 -layer-long "$@"; }
layers -layers=leader -layer-stores=redis,etcd,postgres-ttl -strict "$@"
layers -layers=cron,once,httpmw -layer-stores=redis,etcd,postgres "$@"
