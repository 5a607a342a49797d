// Package bench holds dlock's benchmarks: each store side by side with the
// raw protocol floor of its server and with peer libraries, in one run. It is
// a module of its own so that the peers never enter dlock's go.mod.
//
// Run with `make bench` (it starts the servers) or, with the servers up,
// `go test -run '^$' -bench . -benchmem ./...` in this folder.
package bench
