# dlock's developer commands. The two that matter are in the README:
#   make demo   the demo, on the in-memory store, no servers needed
#   make test   the whole suite against real Redis, PostgreSQL and etcd

.PHONY: demo test bench torture fuzz services-start services-stop

demo:
	go run ./examples/demo

test:
	scripts/test.sh

# Benchmarks: each store beside its raw protocol floor and its peers, in
# one run (see docs/benchmarks.md).
bench:
	scripts/bench.sh

# The reliability battery's long runs: 8 client processes per store, faults
# every 1.5 s (etcd: 200 s, every 3 s). See docs/reliability.md.
torture:
	scripts/torture.sh

# Fuzz the key path for FUZZTIME (default 60s).
FUZZTIME ?= 60s
fuzz:
	go test -run '^$$' -fuzz FuzzKey -fuzztime $(FUZZTIME) ./backends/memlock

services-start:
	scripts/services.sh start

services-stop:
	scripts/services.sh stop
