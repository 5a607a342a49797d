// Package torture is dlock's reliability battery: many clients take locks
// on one real store while a nemesis kills, pauses, partitions them, drops
// the store's replies to them and restarts the store (or a member of it),
// and an independent checker reads their logs afterwards and counts what
// must never happen.
//
// The entry point is the test TestTorture (see torture_test.go and
// docs/reliability.md). This package holds the parts it is built from: the
// harness ([Run]), the log format ([Parse]), the checkers ([Check],
// [CheckLimits], which adds the refusal check and a porcupine
// linearizability check against a mutex model), the fenced register
// ([OpenRegister]) the clients write through, and the TCP proxy ([Proxy])
// that injects the network faults.
//
// Clients are processes (the test binary re-executed), except for a store
// whose locks live in one process (memlock): its clients are goroutines
// sharing a Locker, "kill" abandons a lock without releasing it and
// "stop" blocks the client, refreshes included.
//
// What the battery does not cover (clock skew, Redis with persistence,
// network faults on Redis Cluster) is listed in docs/reliability.md.
package torture
