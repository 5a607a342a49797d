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
//   - Acquire: a lease grant for the TTL, then one transaction
//     "if CreateRevision(key) == 0 then Put(key, owner, lease)": two round
//     trips. The lease ID is chosen here, so that a grant whose answer was
//     lost can still be revoked; a refused or failed attempt revokes its
//     lease (in the background, not on the caller's time).
//   - Refresh: one keepalive of the lease (one round trip) when the TTL is
//     unchanged; a new TTL moves the key to a new lease in a transaction
//     conditioned on the key still holding owner, then revokes the old one.
//   - Release: one lease revocation, which deletes the key with it (one
//     round trip).
//
// Every lock has its own lease. One lease shared by the locks of a process
// (etcd's concurrency.Session) would cost one round trip less per acquire,
// but then locks would live and die together: refreshing one would keep the
// others alive, so a lock its holder stopped refreshing would not free
// itself after its TTL, and no lock could have a TTL of its own.
//
// Refresh and Release act on the lease alone, without checking the key,
// because of one invariant: a key is attached only to its owner's lease,
// and only dlock writes under KeyPrefix. So a lease of ours that still
// exists still carries our key, and revoking it can only delete our key; a
// lease that expired took our key with it, and a new holder's key sits on
// the new holder's lease. A key written under KeyPrefix by anything other
// than dlock breaks that invariant. For a lock it did not acquire itself (the
// clean-up after an ambiguous acquisition) a backend reads the key first.
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
// once. A new leader extends every lease by about an election timeout, so a
// lock may outlive its TTL across a leader change, never the other way.
//
// # TTLs
//
// Leases have whole seconds: a TTL is rounded up to the next second, and up
// to the server's minimum lease TTL (1.5 election timeouts rounded up:
// 2 s with etcd's default 100 ms heartbeat and 1 s election timeout).
// [lock.Lock.TTL] reports what the server granted. A lease expires up to
// about half a second after its TTL (the leader checks periodically).
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
