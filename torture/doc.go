// Package torture is dlock's reliability battery: many client processes
// take locks on one real store while a nemesis kills, pauses and
// disconnects them, and an independent checker reads their logs afterwards
// and counts what must never happen.
//
// The entry point is the test TestTorture (see torture_test.go and
// docs/reliability.md). This package holds the parts it is built from: the
// log format ([Parse]), the checker ([Check]) and the fenced register
// ([OpenRegister]) the clients write through.
//
// What the battery does not cover yet (network partitions, lost replies,
// store restarts, clock skew, the layers) is listed in docs/reliability.md.
package torture
