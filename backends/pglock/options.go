package pglock

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/dlockgo/dlock/lock"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Options configure a pglock store. The zero value, and nil, mean the
// defaults.
type Options struct {
	// Lock configures the [lock.Locker] that [New] returns (identity,
	// clean-up timeout). [NewBackend] uses only its Identity, which it puts
	// into the application_name of the store's sessions.
	Lock lock.Options

	// Namespace is hashed with every key (see [KeyID]): Lockers with
	// different namespaces never exclude each other, except by a hash
	// collision. Default: "" (no namespace).
	Namespace string

	// EnforceTTL makes the server enforce the TTL: every held lock gets a
	// session of its own whose idle_session_timeout (PostgreSQL ≥ 14) is
	// the TTL, so a holder that stops refreshing — frozen, partitioned or
	// stuck — loses its session, and with it the lock, TTL after its last
	// acquire or refresh. It costs one connection per held lock.
	//
	// Default (false): the TTL is advisory. Locks live on a few shared
	// sessions (see Sessions) until they are released or the session dies;
	// a holder that freezes keeps its locks until its TCP connection is
	// dropped.
	EnforceTTL bool

	// Sessions is the number of dedicated sessions (connections) the store
	// opens to hold advisory locks; keys are spread over them by hash. In
	// EnforceTTL mode it is the number of idle sessions kept for reuse.
	// Default: 4.
	Sessions int

	// HealthInterval is the period of the background health check, which
	// runs `SELECT pg_backend_pid()` on every idle session that holds no
	// server-enforced lock. A session that fails it is dead, and every lock
	// it held is reported lost. A session closed by the server (terminated,
	// restarted, timed out) is noticed at once, without waiting for the
	// check. Default: 1s.
	HealthInterval time.Duration

	// OpTimeout bounds one statement on a dedicated session. Such a
	// statement is never interrupted by the caller's context: cancelling
	// it would close the session and lose every lock on it. The health
	// check closes a session whose statement has run longer than OpTimeout
	// (so up to OpTimeout + HealthInterval). Default: 10s.
	OpTimeout time.Duration

	// RecordHolders makes every acquisition also record its owner and
	// fencing token in the table dlock_holders, in the same statement, so
	// that [Backend.Inspect] can name the holder of a key. The write costs
	// a transaction ID and a row per acquisition (about 1.5–2.5× the
	// round trip of an acquisition on a loopback server). Default: off;
	// Inspect then tells whether a key is free, but for a held key
	// returns an error wrapping errors.ErrUnsupported: it cannot say by
	// whom. Leader observation (package leader) needs RecordHolders.
	// The row also holds the namespace and the key, so that
	// [Backend.List] (dlock ls) can list the keys held by recording
	// holders; without RecordHolders List is unsupported.
	RecordHolders bool

	// SkipMigrate stops [New] and [NewBackend] from creating the sequence
	// and table the store uses (see [Migrate]); they only check that both
	// exist. Use it when the application's role may not create objects.
	SkipMigrate bool
}

const (
	defaultSessions       = 4
	defaultHealthInterval = time.Second
	defaultOpTimeout      = 10 * time.Second
	// watchDelay is how long a session must be idle before it starts
	// waiting on its connection for its own death. Statements closer
	// together than this never pay for stopping the wait (a wake-up and
	// two deadline changes, tens of microseconds). It bounds how long a
	// lock just acquired goes unwatched, and so the window in which a
	// session the server terminated has freed the lock before its holder
	// is told: 10 ms measured 7–11 ms to the holder's context being
	// cancelled for a lock just acquired, 2 ms measures about a third.
	watchDelay = 2 * time.Millisecond
	// maxTTL is the largest idle_session_timeout PostgreSQL accepts.
	maxTTL = time.Duration(math.MaxInt32) * time.Millisecond
)

func (o *Options) resolve() (Options, error) {
	var r Options
	if o != nil {
		r = *o
	}
	switch {
	case r.Sessions < 0:
		return r, fmt.Errorf("pglock: negative Sessions %d", r.Sessions)
	case r.HealthInterval < 0:
		return r, fmt.Errorf("pglock: negative HealthInterval %v", r.HealthInterval)
	case r.OpTimeout < 0:
		return r, fmt.Errorf("pglock: negative OpTimeout %v", r.OpTimeout)
	case len(r.Lock.Identity) > lock.MaxIdentityLength:
		return r, fmt.Errorf("pglock: identity is %d bytes, the limit is %d", len(r.Lock.Identity), lock.MaxIdentityLength)
	}
	if r.Sessions == 0 {
		r.Sessions = defaultSessions
	}
	if r.HealthInterval == 0 {
		r.HealthInterval = defaultHealthInterval
	}
	if r.OpTimeout == 0 {
		r.OpTimeout = defaultOpTimeout
	}
	return r, nil
}

// prepare is what NewBackend and NewRecords do first: refuse a nil pool,
// resolve the options, and create the schema (or, with SkipMigrate, check
// that it is there).
func prepare(ctx context.Context, pool *pgxpool.Pool, opts *Options) (Options, error) {
	if pool == nil {
		return Options{}, lock.ErrNilDatabaseClient
	}
	o, err := opts.resolve()
	if err != nil {
		return Options{}, err
	}
	if o.SkipMigrate {
		err = check(ctx, pool)
	} else {
		err = Migrate(ctx, pool)
	}
	return o, err
}
