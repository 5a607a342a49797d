// Package redislock keeps dlock's locks in Redis, through any go-redis v9
// client: a single server ([redis.Client]), Sentinel
// ([redis.NewFailoverClient]), Redis Cluster ([redis.ClusterClient]) or a
// [redis.Ring].
//
//	locker, err := redislock.New(rdb, nil)
//	lk, err := locker.Acquire(ctx, "invoice/42", 30*time.Second)
//
// # How it works
//
// Every operation is one round trip: a Lua script run with EVALSHA (EVAL
// when the server does not have it cached yet).
//
//   - Acquire: SET key owner NX PX ttl and, only if that succeeded, the next
//     fencing token, written to a counter key beside the lock.
//   - Refresh: compare-and-PEXPIRE; only the owner extends its lock.
//   - Release: compare-and-DEL; only the owner frees its lock.
//
// A key k is stored as <prefix>{k'} (the lock, its value the owner) and
// <prefix>{k'}:fence (the counter), where the prefix defaults to "dlock:"
// and k' is k with '\' and '}' escaped. Both keys share the hash tag k', so
// they live in the same Redis Cluster slot whatever bytes k holds; keys
// are binary-safe up to [lock.MaxKeyLength] bytes, NUL included. TTLs are
// whole milliseconds: a TTL that is not is rounded up, and [lock.Lock.TTL]
// reports the TTL granted.
//
// The scripts use SET … GET, so the server must be Redis 6.2 or later (or a
// compatible server such as Valkey). The Locker does not own the client:
// Close leaves it open.
//
// # What is promised
//
// On a single Redis server (and on the master that owns a key's slot):
//
//   - Mutual exclusion and ownership, as long as the server keeps its data
//     and its clock runs at the right rate (Redis expires keys on its own
//     clock).
//   - Fencing: each acquisition of a key gets a token larger than every
//     earlier one. The token is max(last token + 1, server time in µs), so
//     it also keeps growing after the server restarted without persistence
//     (or lost the counter in any other way), provided the server's clock
//     has not gone back. The counter of a key expires
//     [Options.FenceRetention] (default 1h) after the lock's TTL when nobody
//     takes the key again, so Redis does not keep one key per lock name
//     forever; a counter that expired restarts from the clock, which is
//     safe as long as the clock has not gone back by more than the
//     retention. Tokens stay below 2^53 (exact in Lua) until the year 2255.
//   - A restarted server has forgotten its locks: the old holder's Refresh
//     and Release report [lock.ErrLockNotHeld], and [lock.Hold] cancels its
//     work at the next refresh.
//   - Contexts: a call returns when its context ends. go-redis itself
//     ignores contexts on socket reads unless the client was built with
//     ContextTimeoutEnabled, and even then it only honours deadlines, not
//     cancellation. So a call under a context that has a deadline, on such
//     a client, is made directly (go-redis ends it at the deadline; a
//     cancellation before the deadline waits for the reply). Any other
//     call under a context that can end runs in a goroutine, and returns
//     as soon as the context ends; the call finishes in the background,
//     an acquisition it made after its caller left is released, and the
//     Locker's Close waits for it. That goroutine costs a hand-off between
//     threads on every call (15–60 µs per operation on a loaded 2-core
//     machine): for speed, use ContextTimeoutEnabled and deadlines
//     (package backends builds its Redis clients that way).
//
// # What is not promised
//
//   - Replication is asynchronous. When a master fails over (Sentinel,
//     Cluster), a lock or a counter that had not reached the replica is
//     lost: a second holder can get the key while the first one still
//     works, and — if the counter was lost and the new master's clock is
//     behind the old one — with a token that is not larger. WAIT narrows
//     the window but does not close it (the election may still promote a
//     replica that had not acknowledged). If a duplicate write would be wrong, check the fencing
//     token where you write, and run the server with a clock kept in step
//     (NTP, slewing, not stepping).
//   - Eviction: with a maxmemory policy other than noeviction Redis may
//     evict locks and counters. Use noeviction, or a dedicated database.
//   - Redlock (a majority of independent masters) is not offered. It
//     multiplies round trips and servers while still depending on bounded
//     pauses and clock rates for safety, and it has no fencing token; a
//     single master with fencing tokens
//     checked at the resource is both simpler and safer.
//   - Waiting for a release: Acquire tries once, [driver.Waiter] is not
//     implemented (package retry polls with backoff).
//
// [Backend] implements [driver.Inspector]: who holds a key (owner and
// identity), with which token, for how much longer; Lockers from [New]
// expose it as [lock.Inspector]. [NewRecords] keeps package once's
// completion records in Redis hashes beside the locks.
package redislock
