// Package etcdlock keeps dlock's locks in etcd (v3 API, server 3.4 or
// later), for users who need locks that survive the loss of a node.
//
// [New] returns a [lock.Locker]; [NewBackend] the bare [driver.Backend],
// which also implements [driver.LossNotifier], [driver.Inspector] and
// [driver.Waiter]. Both are safe for concurrent use. Neither owns the
// *clientv3.Client: close it after the Locker.
//
// # The protocol
//
// A lock is the etcd key KeyPrefix+key (the key's bytes unchanged; any
// bytes up to [lock.MaxKeyLength]) whose value is the owner string, attached
// to a lease of its own:
//
//   - Acquire: one transaction "if CreateRevision(key) == 0 then Put(key,
//     owner, lease)". The lease is a new one, granted first (two round
//     trips), or, usually, an idle lease this backend kept from an earlier
//     release or refused attempt, renewed by a keepalive that travels
//     together with the transaction (one round trip, two requests, one
//     write through Raft). Lease IDs are chosen here, so that a grant whose
//     answer was lost can still be revoked.
//   - A key this backend found held within the last second is read first
//     (a linearizable read, no Raft write); while it is still held the
//     attempt ends there, so polling a held key costs one read.
//   - Refresh: a keepalive of the lease, and a read of the key in the same
//     round trip to confirm that it still holds owner on that lease. A TTL
//     that needs a lease of another length moves the key to a new lease in
//     a transaction conditioned on owner and lease (two round trips).
//   - Release: one transaction "if Value(key) == owner and Lease(key) ==
//     lease then Delete(key)" (one round trip). The lease, which then
//     carries nothing, is kept for the next acquisition.
//
// Every lock has its own lease. One lease shared by the locks of a process
// (etcd's concurrency.Session) would make acquisition one round trip
// cheaper, but then locks would live and die together: refreshing one would
// keep the others alive, so a lock its holder stopped refreshing would not
// free itself after its TTL, and locks could not have TTLs of their own.
// Idle leases are private to one backend, never carry a key, are used for
// one lock at a time, and are revoked after two idle seconds, when more than
// 16 pile up, and by Close. No lease is left behind by a failed attempt: an
// attempt whose outcome is unknown revokes its lease, which deletes the key
// with it only if the key is attached to it, that is, only if it is ours.
//
// # What etcd guarantees
//
// Transactions are linearizable (applied through Raft by a quorum), so two
// holders can never both see their acquire transaction succeed while the
// cluster keeps a quorum, whatever member they talk to. The fencing token
// [lock.Lock.Token] is the key's create revision: etcd's revision only
// grows, so every new holder of a key gets a larger token, also across
// restarts and leader changes of a cluster that keeps its data. Erasing the
// data (or restoring an older snapshot) can move revisions backwards.
//
// Leases are expired by the leader, by the leader's clock: when it expires
// a lease it deletes the key, and watchers (and [lock.Hold]) learn of it at
// once. A new leader restarts every lease's countdown from its full TTL
// (plus an election timeout): across a leader change, a lock that a dead
// holder left behind can outlive its TTL, never the other way.
//
// # TTLs
//
// Leases have whole seconds: a TTL is rounded up to the next second, and up
// to the server's minimum lease TTL (1.5 election timeouts rounded up:
// 2 s with etcd's default 100 ms heartbeat and 1 s election timeout).
// [lock.Lock.TTL] reports what the server granted, and later refreshes ask
// for at least that minimum. A lease expires up to about half a second after
// its TTL (the leader checks periodically).
//
// Only dlock may write under KeyPrefix: a key deleted or overwritten by
// anything else is seen as lost (the loss watch fires, Refresh and Release
// report the lock not held), but the lease it was on is only revoked at the
// next Refresh or Release.
//
// # What it does not guarantee
//
// A lease is a promise about time. A holder that pauses (GC, a stopped VM,
// a partition) past its lease's expiry keeps running its critical section
// after someone else acquired the key; no lock service can prevent that.
// Fencing is the answer: pass [lock.Lock.Token] with every write the lock
// protects, and have the resource refuse a token smaller than one it has
// seen. [lock.Hold] cancels its context as soon as the watch sees the key
// deleted, or when no refresh succeeded in time, which narrows the window
// but cannot close it.
//
// Loss notification needs etcd to answer: while no member can be reached
// a watch reports nothing, and the refresh deadline of [lock.Hold] is what
// ends the hold.
package etcdlock
