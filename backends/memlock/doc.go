// Package memlock is dlock's in-process lock store: the embedded default and
// the fake to test with.
//
// A [Store] is a sharded map from key to holder in this process's memory.
// Every [lock.Locker] made from the same Store is a separate client of it —
// as separate processes would be of a real store — so a test or a demo can
// run several "replicas" in one process. [New] makes a Store and one Locker
// on it.
//
// # What it promises
//
// memlock passes the whole conformance suite (lock/locktest): mutual
// exclusion, ownership, strictly increasing fencing tokens (one atomic
// counter per Store, so tokens also increase across keys), and native TTLs
// with nanosecond precision, measured on the process's monotonic clock.
// Expiry is lazy: an expired lock is noticed by the next call that touches
// its key, and each acquisition also probes two other entries of its shard
// and removes them if expired, so memory stays bounded without a goroutine
// or a timer per lock.
//
// It implements [driver.Inspector], [driver.Lister] and [driver.Waiter] (a waiter is woken
// by the release, or at the holder's expiry).
//
// # What it does not promise
//
// Nothing survives the process: locks and the fencing counter live in its
// memory. Use memlock to coordinate goroutines of one process, for tests,
// and for demos; use a real store to coordinate processes.
package memlock
