// Package pglock is a dlock store on PostgreSQL session advisory locks,
// through pgx v5. Teams that already run PostgreSQL get locks without another
// server; this package avoids the traps of advisory locks and states plainly
// what remains.
//
//	pool, err := pgxpool.New(ctx, "postgres://app@db/app")
//	…
//	locker, err := pglock.New(ctx, pool, nil)
//	…
//	lk, err := locker.Acquire(ctx, "jobs/nightly", time.Minute)
//
// # Keys
//
// A key is any byte string up to [lock.MaxKeyLength]; the advisory lock is
// taken on its 64-bit [KeyID], a SHA-256 of (namespace, key) whose definition
// is fixed and documented, so every process and version agrees on it. Two
// keys can share an id (about n²/2⁶⁵ among n keys held at once): they then
// exclude each other, never the reverse. Advisory locks of other
// applications in the same database share the id space; set
// [Options.Namespace] or use a database of dlock's own if that matters.
//
// # Sessions
//
// Advisory locks belong to a server session, so the store owns its
// sessions: connections taken from the pool once and hijacked (they no longer
// count against the pool, and the store closes them; opening one needs a
// free connection of the pool for a moment, so a pool whose connections are
// all checked out delays it until the caller's ctx ends). In the default,
// advisory-TTL mode a few sessions ([Options.Sessions], default 4) hold all
// the locks, keys spread over them by id; acquire and release are one
// statement, one round trip, each. A session re-acquires a lock it already
// holds, so the store keeps a table of the keys this process holds or is
// acquiring, and refuses a second holder in the same process without asking
// the server.
//
// A statement on a session is never interrupted by the caller's context
// (that would close the session and lose every lock on it): waiting for the
// session honours ctx, the statement itself runs to completion, bounded by
// [Options.OpTimeout].
//
// # Fencing tokens
//
// Tokens come from the sequence dlock_fence (CACHE 1), drawn in the statement
// that takes the lock and only when the lock was granted:
//
//	SELECT CASE WHEN pg_try_advisory_lock($1) THEN nextval('dlock_fence') END
//
// CASE evaluates its THEN branch after its condition, and only when it is
// true, and nextval is volatile, so it is never evaluated ahead of time: a
// later holder of a key draws its token after the earlier holder drew its
// own, and gets a larger one. Tokens survive a restart of the server; after
// a crash they jump ahead (PostgreSQL logs sequences 32 values ahead). They
// never go backwards provided the server's WAL is durable (fsync on, and
// synchronous_commit on or a crash that loses no committed WAL). [Migrate]
// creates the sequence (and the table dlock_holders); [New] runs it unless
// [Options.SkipMigrate] is set.
//
// # Loss
//
// A lock lives as long as its session. When a session dies — terminated
// (pg_terminate_backend), server restarted, network failure, or its
// idle_session_timeout in EnforceTTL mode — every lock it held is lost:
// Refresh and Release report [lock.ErrLockNotHeld], and the Backend
// implements [driver.LossNotifier], so [lock.Hold] cancels its context at
// once. A session that has been idle for 2ms waits on its connection, so a
// session closed by the server is noticed at once (measured on a loaded
// 2-core machine, median of 20: 2.4–2.5ms from pg_terminate_backend to the
// cancelled context for a lock held a while, 2.0–3.0ms for one acquired
// just before — 9.3ms when the wait began after 10ms idle); a
// background health check ([Options.HealthInterval]) pings idle
// sessions, which also finds connections that died silently, and Refresh is
// a liveness check of the session.
//
// When the server ends a session (pg_terminate_backend, a crash or restart),
// it frees the session's locks at once, without waiting for the holder to
// learn it: another client can take a lock a few milliseconds before its
// old holder's context is cancelled. The reliability battery (torture/) saw
// this for a lock acquired on a session while it was being terminated: the
// holder was not told during its 7ms critical section, and another client
// got the key after 4ms. Fence the writes the lock protects (see
// docs/guarantees.md): the battery's fenced register refused the stale
// write. (The loss of a session that pglock closes itself — Release after a
// failed Refresh, Close — is of course reported before the server frees.)
//
// # TTL
//
// By default the TTL is advisory: the server frees a lock when it is
// released or its session dies, never because a TTL ran out. A holder that
// freezes (a stopped process, a long pause) keeps its locks for as long as its
// TCP connection stays up; set the server's tcp_keepalives_* settings to bound
// that for dead machines. lock.Hold still cancels the holder's own context
// when no refresh succeeds in time.
//
// With [Options.EnforceTTL] the server enforces it: each held lock gets a
// session of its own whose idle_session_timeout (PostgreSQL ≥ 14) is the TTL,
// rounded up to a millisecond, restarted by every refresh. A holder that stops
// refreshing — frozen, partitioned, stuck — loses its session, and so the lock,
// TTL after its last acquire or refresh finished on the server (measured: a
// frozen holder's 500ms lock was free 503ms after its acquire returned). The
// price is a connection per held lock and a slower acquire.
//
// # Poolers
//
// Session advisory locks cannot work through a pooler in transaction or
// statement mode (PgBouncer's pool_mode = transaction): two clients can share
// one server session and both "hold" a lock, and an unlock can run on another
// session than the lock. [New] probes the pool and refuses it with
// [ErrTransactionPooling]; the probe cannot see every such pooler, so
// refreshes and the health check also check that a session still answers
// from the backend it was opened on ([ErrSessionMoved]; the session is then
// dropped and its locks reported lost). Connect directly to PostgreSQL, or
// through a pooler in session mode.
//
// # Inspection
//
// [Backend.Inspect] (and the Locker's lock.Inspector) asks pg_locks whether a
// key is held. It can name the owner and token — as leader observation
// needs — only when holders record themselves, and otherwise answers
// errors.ErrUnsupported for a held key ([Options.RecordHolders], which writes
// a row of the unlogged table
// dlock_holders in the acquiring statement: a transaction ID and a row write
// per acquisition, which made acquire+release about twice as slow on a
// loopback server).
//
// [Backend.List] (the Locker's lock.Lister, used by dlock ls) reports the
// keys of this namespace held by holders that record themselves, from
// dlock_holders joined with pg_locks; advisory locks are taken on a hash of
// the key, so keys held without RecordHolders cannot be listed.
//
// # Waiting
//
// The Backend implements [driver.Waiter] (so package retry can wait for a
// release instead of polling) with the server's lock queue: a waiter asks
// for a shared advisory lock on the key's id, granted when the holder lets
// go and dropped at the end of the same statement. Releases pay nothing for
// it; each waiter holds a connection of the pool while it waits.
//
// # Completion records
//
// [Records] keeps package once's completion records and fences in the table
// dlock_once, one atomic statement per call on the pool.
//
// # Not promised
//
//   - A lock is safe only while its session is: a holder whose connection is
//     cut may keep running until it notices (its Hold context is cancelled at
//     the latest after OpTimeout + HealthInterval or its next failed refresh),
//     while the server may already have freed the lock. Use fencing tokens.
//   - Closing a Locker closes its sessions and so frees every lock it held,
//     unlike stores whose locks outlive the Locker until their TTL.
//   - Replicas: advisory locks are local to one server. After a failover to
//     a standby every lock is gone, and the standby's dlock_fence may be behind
//     the primary's by whatever was not replicated.
//
// All exported types are safe for concurrent use.
package pglock
