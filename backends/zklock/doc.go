// Package zklock keeps dlock's locks in Apache ZooKeeper (3.5 or later),
// for teams that already run an ensemble (Kafka, Hadoop and friends).
//
// [New] returns a [lock.Locker]; [NewBackend] the bare [driver.Backend],
// which also implements [driver.LossNotifier], [driver.Inspector],
// [driver.Waiter] and [driver.Lister]. Both are safe for concurrent use.
// They take the ensemble's addresses and open their own sessions, through
// github.com/go-zookeeper/zk: a lock's lifetime is a session's, and the
// backend picks the session by the lock's TTL (below), which it could not
// do on one connection made by the caller. Close ends the sessions, which
// frees every lock still held at once.
//
// # The protocol
//
// A lock is one ephemeral znode, Root/l/<key>, whose data is the owner
// string, plus an ephemeral owner marker Root/o/<key>@<owner>. The key and
// the owner are escaped into valid znode names: the bytes A-Z a-z 0-9 - _
// stay, every other byte becomes %XX (so no '/', '.', '@' or control
// character remains, and the escaping is injective).
//
//   - Acquire: one multi-operation transaction (one round trip): create the
//     lock node, create the marker, and write the lock node's data again,
//     whose answer carries the node's Stat. A lock node that exists makes
//     the transaction fail with "node exists": the key is held, and nothing
//     was written.
//   - Refresh: a read of the lock node (one round trip), which must still
//     hold owner with the same creation zxid, owned by the backend's live
//     session. Nothing is extended on the server: the session's heartbeats
//     keep the node (the lock's local deadline moves, unless the TTL is advisory).
//   - Release: one transaction deleting the marker and the lock node (one
//     round trip). ZooKeeper cannot compare a node's data in a transaction,
//     but it can require a node to exist: the marker exists exactly as long
//     as owner holds the key, so the transaction deletes nothing when the
//     lock is no longer owner's.
//
// A plain ephemeral node at a fixed path rather than an ephemeral
// sequential node in a queue (the recipe of Apache Curator's
// InterProcessMutex): dlock's Acquire tries once and never waits in line,
// so a queue would cost a listing and a clean-up of the refused attempt's
// node, three round trips instead of one, for a fairness nobody asked for.
// Waiting is done by package retry, helped by [driver.Waiter]: a watch on
// the lock node's deletion.
//
// # Fencing
//
// [lock.Lock.Token] is the lock node's creation zxid (Czxid). Zxids are
// ZooKeeper's transaction IDs, totally ordered: an epoch in the high 32
// bits, bumped by every new leader of an ensemble, and a counter in the low
// 32 bits. Every new lock node of a key is created by a later transaction,
// so its token is larger. The server logs every transaction (with fsync,
// unless forceSync=no) before it answers, and a restarted server — a
// standalone one continues the counter from its log, an ensemble starts a
// new epoch — never hands out a smaller zxid, so tokens increase across
// restarts and leader changes of an ensemble that keeps its data. Erasing
// the data directory moves zxids back to zero.
//
// # TTLs and sessions
//
// ZooKeeper has no TTL per node that a client keeps alive: liveness is the
// session's. A client's session survives while the client keeps talking to
// the ensemble (the client pings every third of the session timeout); the
// server ends it — deleting its ephemeral nodes — when it has not heard
// from the client for the session timeout, and the client learns that its
// session expired when it reconnects.
//
// The backend therefore maps a lock's TTL onto a session length: a lock of
// TTL t lives on a session of SessionTimeout·2ⁿ, the shortest such that is
// at least t, capped at MaxSessionTimeout ([Options]; 4 s to 40 s by
// default, ZooKeeper's own bounds with its default tick of 2 s). There is
// one session per length in use, shared by the locks of that length: at
// most a handful, opened when first needed. What this promises:
//
//   - A holder whose process dies, or who is cut off from the ensemble,
//     loses its locks one session timeout (at least the TTL) after the
//     server last heard from it.
//   - A holder that lives loses a lock it does not refresh within its TTL,
//     as on the other stores: its own backend deletes it (a timer per held
//     lock, reset by every Refresh; a deletion that cannot reach the
//     ensemble is retried until the session ends). The granted TTL is the
//     one asked for. Only the holder's backend knows the deadline:
//     [driver.Inspector] reports it for locks held through the same
//     backend, and zero for others.
//   - Because the session is at least as long as the TTL, the server never
//     frees a lock before [lock.Hold]'s refresh deadline has told its
//     holder (Hold ends a hold when no refresh succeeded within TTL −
//     margin).
//   - A TTL longer than MaxSessionTimeout is granted as asked, on the
//     longest session; such a lock is reported lost (by [lock.Hold]'s
//     context) as soon as its connection drops, because the server may
//     then free it before its TTL.
//
// With [Options.AdvisoryTTL] a lock lives as long as its holder's session
// instead: a holder that stays connected keeps its locks until it releases
// them or closes the Locker, refreshed or not, and the granted TTL is the
// session's length (declared to the conformance suite as advisory). It
// saves the timer; the default is enforced because code written against
// [lock.Locker] expects a lock it forgets — a cron tick held to its
// MinHold, a goroutine that crashed — to go away after its TTL.
//
// The server must grant the session lengths the backend asks for: set
// SessionTimeout at or above the server's minSessionTimeout and
// MaxSessionTimeout at or below its maxSessionTimeout. The Go client does
// not report the length the server negotiated; a server that granted less
// than asked would free locks before their holders are told.
//
// # Loss
//
// [lock.Hold] learns of a loss without waiting for its next refresh: the
// backend follows each session's state and watches each held lock node.
// Its context is cancelled when the session expired (the client learns it
// on reconnecting), when the node is deleted or overwritten (by anything
// but its holder), when the backend is closed, and for the long-TTL locks
// above when the connection drops.
//
// # Completion records
//
// [NewRecords] keeps package once's completion records: a persistent node
// per key under Root/r holding the fence, the completing run's token and
// an expiry (by this client's clock) for the retention. Begin and Complete
// read the node and write it back only at the version they read, reading
// again when another writer got in between.
//
// # What it does not guarantee
//
// A session is a promise about time, measured by the server. A holder that
// pauses (GC, a stopped VM) or is partitioned for longer than its session
// timeout keeps running its critical section after the server gave the key
// to someone else; it learns of it only when it reconnects or its refresh
// deadline passes. No lock service can prevent that. Fencing is the
// answer: pass [lock.Lock.Token] with every write the lock protects, and
// have the resource refuse a token smaller than one it has seen.
//
// Partitions: a client cut off from the ensemble keeps retrying every
// server; while it is away its session runs down on the server. If it
// reconnects in time, nothing was lost; if not, the server deleted its
// nodes at the session's expiry and the client learns so on reconnection.
// Reads (Refresh, Inspect) are served by the server the client is
// connected to, which may lag the leader by a little; writes (Acquire,
// Release) are ordered by the leader.
//
// Leader failover of an ensemble: while a new leader is elected (typically
// a few hundred milliseconds to seconds) the servers do not serve
// clients, so calls fail with errors and clients reconnect. Sessions are
// kept by the ensemble, and the new leader restarts every session's
// countdown, so a session survives a failover shorter than its timeout;
// locks then stay held. A lock whose holder died just before a failover
// can outlive its session timeout by the election's length, never the
// other way.
//
// Only dlock may write under Root: a lock node deleted or overwritten by
// anything else is seen as lost (the watch fires, Refresh and Release
// report the lock not held).
package zklock
