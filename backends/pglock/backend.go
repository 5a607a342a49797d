package pglock

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dlockgo/dlock/internal/storeutil"
	"github.com/dlockgo/dlock/lock"
	"github.com/dlockgo/dlock/lock/driver"
)

// New returns a [lock.Locker] that holds PostgreSQL session advisory locks
// on sessions of its own, opened from pool. It creates the sequence and
// table it needs (see [Migrate]) unless opts.SkipMigrate is set, and refuses
// a pool that reaches PostgreSQL through a pooler in transaction or
// statement mode ([ErrTransactionPooling]). A nil pool returns
// [lock.ErrNilDatabaseClient]; nil opts means the defaults.
//
// The Locker does not close pool. Closing the Locker closes its sessions,
// which frees every lock it still held.
func New(ctx context.Context, pool *pgxpool.Pool, opts *Options) (lock.Locker, error) {
	b, err := NewBackend(ctx, pool, opts)
	if err != nil {
		return nil, err
	}
	return storeutil.NewLocker(b, &b.opts.Lock)
}

// Backend is the pglock [driver.Backend]. Most users want [New]; the
// Backend is exported for the conformance suite and for tools that need its
// optional capabilities ([driver.LossNotifier], [driver.Inspector],
// [driver.Waiter]) directly.
// It is safe for concurrent use.
type Backend struct {
	pool    *pgxpool.Pool
	opts    Options
	appName string
	stmts   map[string]string // prepared by every session: name → SQL

	slots []slot // advisory mode: the shared sessions, keys spread by hash

	mu       sync.Mutex
	held     map[int64]*hold       // key id → this process's holder (or claim)
	spares   []*session            // EnforceTTL: idle sessions for reuse
	sessions map[*session]struct{} // every open session, for Close
	closed   bool

	wg         sync.WaitGroup // session watchers
	stopHealth chan struct{}
	healthDone chan struct{}
	pinging    atomic.Bool // a round of health pings is running
}

var (
	_ driver.Backend      = (*Backend)(nil)
	_ driver.LossNotifier = (*Backend)(nil)
	_ driver.Inspector    = (*Backend)(nil)
	_ driver.Lister       = (*Backend)(nil)
	_ driver.Waiter       = (*Backend)(nil)
)

// slot is one shared session of the advisory mode, replaced when it dies.
type slot struct {
	s   atomic.Pointer[session]
	sem chan struct{} // serializes replacing the session
}

// hold is what this process knows about one key id it holds or tries to.
type hold struct {
	owner   string
	token   uint64
	s       *session // nil while the acquisition is in flight
	pending bool     // in flight, or its outcome is unknown
}

// NewBackend is [New] without the [lock.Locker] around it: it returns the
// store's [driver.Backend]. opts.Lock is ignored but for its Identity. It
// opens two sessions at once (they also serve to detect a transaction
// pooler), and more as keys need them, up to opts.Sessions in advisory mode.
func NewBackend(ctx context.Context, pool *pgxpool.Pool, opts *Options) (*Backend, error) {
	o, err := prepare(ctx, pool, opts)
	if err != nil {
		return nil, err
	}
	b := &Backend{
		pool:       pool,
		opts:       o,
		appName:    appName(o.Lock.Identity),
		stmts:      statements(o),
		held:       make(map[int64]*hold),
		sessions:   make(map[*session]struct{}),
		stopHealth: make(chan struct{}),
		healthDone: make(chan struct{}),
	}
	// The probe's two sessions are the first ones the store uses: a bad
	// pool fails here, not at the first Acquire.
	first, err := b.probe(ctx)
	if err != nil {
		return nil, err
	}
	for _, s := range first {
		b.sessions[s] = struct{}{}
	}
	if o.EnforceTTL {
		b.spares = first[:min(len(first), o.Sessions)]
	} else {
		b.slots = make([]slot, o.Sessions)
		for i := range b.slots {
			b.slots[i].sem = make(chan struct{}, 1)
		}
		for i := 0; i < len(first) && i < len(b.slots); i++ {
			b.slots[i].s.Store(first[i])
		}
	}
	for _, s := range first[min(len(first), o.Sessions):] {
		b.discard(s)
	}
	go b.health()
	return b, nil
}

// appName is the application_name of the store's sessions: "dlock" or
// "dlock:" + identity, visible to every user of the server
// (pg_stat_activity). PostgreSQL keeps 63 bytes of printable ASCII; other
// bytes of the identity become '?'.
func appName(identity string) string {
	n := []byte("dlock")
	if identity != "" {
		n = append(n, ':')
		for i := 0; i < len(identity) && len(n) < 63; i++ {
			c := identity[i]
			if c < 0x20 || c > 0x7e {
				c = '?'
			}
			n = append(n, c)
		}
	}
	return string(n)
}

// slotSession returns the live session of sl, opening a new one if it has
// none or its session died.
func (b *Backend) slotSession(ctx context.Context, sl *slot) (*session, error) {
	if s := sl.s.Load(); s != nil && !s.isDead() {
		return s, nil
	}
	select {
	case sl.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-sl.sem }()
	old := sl.s.Load()
	if old != nil && !old.isDead() {
		return old, nil
	}
	s, err := b.dial(ctx)
	if err != nil {
		return nil, err
	}
	if !b.track(s) {
		s.close()
		return nil, lock.ErrClosed
	}
	sl.s.Store(s)
	if old != nil {
		b.discard(old)
	}
	return s, nil
}

// track records s for Close; false when the Backend is closed.
func (b *Backend) track(s *session) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.sessions[s] = struct{}{}
	return true
}

// discard closes a session that is dead or no longer wanted.
func (b *Backend) discard(s *session) {
	b.mu.Lock()
	delete(b.sessions, s)
	b.mu.Unlock()
	s.close()
}

// spare returns an idle session for an EnforceTTL lock.
func (b *Backend) spare(ctx context.Context) (*session, error) {
	b.mu.Lock()
	for len(b.spares) > 0 {
		s := b.spares[len(b.spares)-1]
		b.spares = b.spares[:len(b.spares)-1]
		if !s.isDead() {
			b.mu.Unlock()
			return s, nil
		}
		delete(b.sessions, s)
		b.mu.Unlock()
		s.close()
		b.mu.Lock()
	}
	b.mu.Unlock()
	s, err := b.dial(ctx)
	if err != nil {
		return nil, err
	}
	if !b.track(s) {
		s.close()
		return nil, lock.ErrClosed
	}
	return s, nil
}

// unspare gives an EnforceTTL session back for reuse, or closes it.
func (b *Backend) unspare(s *session) {
	b.mu.Lock()
	if !b.closed && !s.isDead() && len(b.spares) < b.opts.Sessions {
		b.spares = append(b.spares, s)
		b.mu.Unlock()
		return
	}
	b.mu.Unlock()
	b.discard(s)
}

// TryAcquire implements [driver.Backend]. It takes the advisory lock on
// [KeyID] of key and draws the fencing token in one statement. A key that
// this Backend already holds, or is acquiring, is refused without asking the
// server: advisory locks are re-entrant within a session, so the server
// would say yes.
func (b *Backend) TryAcquire(ctx context.Context, key, owner string, ttl time.Duration) (driver.Grant, bool, error) {
	ttlMS, granted, err := wireTTL(b.opts.EnforceTTL, ttl)
	if err != nil {
		return driver.Grant{}, false, err
	}
	id := KeyID(b.opts.Namespace, key)
	claim := &hold{owner: owner, pending: true}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return driver.Grant{}, false, lock.ErrClosed
	}
	if h := b.held[id]; h != nil {
		if h.pending || h.s == nil || !h.s.isDead() {
			b.mu.Unlock()
			return driver.Grant{}, false, nil
		}
		// Its session died: that lock is gone.
	}
	b.held[id] = claim
	b.mu.Unlock()

	var s *session
	if b.opts.EnforceTTL {
		s, err = b.spare(ctx)
	} else {
		s, err = b.slotSession(ctx, &b.slots[uint64(id)%uint64(len(b.slots))])
	}
	if err != nil {
		b.forget(id, claim)
		return driver.Grant{}, false, err
	}

	var token int64
	err = s.run(ctx, func(ctx context.Context, c *pgx.Conn) error {
		var params [][]byte
		var formats []int16
		idt := strconv.AppendInt(nil, id, 10)
		switch {
		case b.opts.RecordHolders:
			params = [][]byte{idt, []byte(owner), strconv.AppendInt(nil, ttlMS, 10), []byte(b.opts.Namespace), []byte(key)}
			formats = []int16{0, 1, 0, 1, 1} // bytea values are sent as they are
		case b.opts.EnforceTTL:
			params = [][]byte{idt, strconv.AppendInt(nil, ttlMS, 10)}
		default:
			params = [][]byte{idt}
		}
		return s.exec(ctx, stmtAcquire, params, formats, func(row [][]byte) error {
			if len(row) > 1 {
				if err := s.checkPIDText(row[1]); err != nil {
					return err
				}
			}
			var err error
			if row[0] != nil {
				token, err = strconv.ParseInt(string(row[0]), 10, 64)
			}
			return err
		})
	})
	switch {
	case err != nil && (s.isDead() || errors.Is(err, errSessionDead)):
		// The session is closed: whatever it took, the server frees.
		b.forget(id, claim)
		if b.opts.EnforceTTL {
			b.discard(s)
		}
		if errors.Is(err, errSessionDead) {
			err = fmt.Errorf("pglock: session closed before acquiring: %w", err)
		}
		return driver.Grant{}, false, err
	case err != nil:
		// The server refused the statement, which may have taken the lock
		// before failing: keep the claim so that Release can unlock it.
		b.mu.Lock()
		claim.s = s
		b.mu.Unlock()
		return driver.Grant{}, false, err
	case token == 0: // NULL: not granted (tokens start at 1)
		b.forget(id, claim)
		if b.opts.EnforceTTL {
			b.unspare(s)
		}
		return driver.Grant{}, false, nil
	}
	b.mu.Lock()
	claim.s, claim.token, claim.pending = s, uint64(token), false
	b.mu.Unlock()
	return driver.Grant{Token: uint64(token), TTL: granted}, true, nil
}

// wireTTL converts ttl to the milliseconds sent to the server (0 in
// advisory mode) and the TTL reported as granted.
func wireTTL(enforce bool, ttl time.Duration) (ms int64, granted time.Duration, err error) {
	if !enforce {
		return 0, ttl, nil
	}
	if ttl > maxTTL {
		return 0, 0, fmt.Errorf("%w: %v is longer than idle_session_timeout allows (%v)", lock.ErrInvalidTTL, ttl, maxTTL)
	}
	ms = int64((ttl + time.Millisecond - 1) / time.Millisecond)
	return ms, time.Duration(ms) * time.Millisecond, nil
}

// forget drops claim for id if it is still the current one.
func (b *Backend) forget(id int64, claim *hold) {
	b.mu.Lock()
	if b.held[id] == claim {
		delete(b.held, id)
	}
	b.mu.Unlock()
}

// lookup returns this process's hold of id for owner, or nil.
func (b *Backend) lookup(id int64, owner string) *hold {
	b.mu.Lock()
	defer b.mu.Unlock()
	h := b.held[id]
	if h == nil || h.owner != owner || h.s == nil {
		return nil
	}
	return h
}

// Refresh implements [driver.Backend]. In advisory mode it is a liveness
// check of the session that holds the lock: the lock is held as long as
// that session lives on the same backend. With EnforceTTL it also restarts
// the server's idle timer with the new TTL.
func (b *Backend) Refresh(ctx context.Context, key, owner string, ttl time.Duration) (time.Duration, bool, error) {
	ttlMS, granted, err := wireTTL(b.opts.EnforceTTL, ttl)
	if err != nil {
		return 0, false, err
	}
	id := KeyID(b.opts.Namespace, key)
	h := b.lookup(id, owner)
	if h == nil || h.pending {
		return 0, false, nil
	}
	s := h.s
	err = s.run(ctx, func(ctx context.Context, c *pgx.Conn) error {
		var params [][]byte
		var formats []int16
		switch {
		case b.opts.EnforceTTL && b.opts.RecordHolders:
			params = [][]byte{strconv.AppendInt(nil, id, 10), strconv.AppendInt(nil, ttlMS, 10), []byte(owner)}
			formats = []int16{0, 0, 1}
		case b.opts.EnforceTTL:
			params = [][]byte{strconv.AppendInt(nil, ttlMS, 10)}
		}
		return s.exec(ctx, stmtRefresh, params, formats, func(row [][]byte) error {
			return s.checkPIDText(row[0])
		})
	})
	if err != nil && s.isDead() {
		// Our end of the session is closed; the server has freed, or
		// will free, the lock. Either way it is not ours any more.
		b.lost(id, h)
		if errors.Is(err, ErrSessionMoved) {
			return 0, false, err
		}
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	if b.lookup(id, owner) != h {
		return 0, false, nil // released meanwhile
	}
	return granted, true, nil
}

// lost forgets a hold whose session died.
func (b *Backend) lost(id int64, h *hold) {
	b.forget(id, h)
	if b.opts.EnforceTTL {
		b.discard(h.s)
	}
}

// Release implements [driver.Backend]. It unlocks on the session that
// holds the lock. A lock whose session died reports ok == false.
func (b *Backend) Release(ctx context.Context, key, owner string) (bool, error) {
	id := KeyID(b.opts.Namespace, key)
	h := b.lookup(id, owner)
	if h == nil {
		return false, nil
	}
	s := h.s
	if s.isDead() {
		b.lost(id, h)
		return false, nil
	}
	var unlocked bool
	err := s.run(ctx, func(ctx context.Context, c *pgx.Conn) error {
		if b.lookup(id, owner) != h {
			return nil // a concurrent Release got there first
		}
		return s.exec(ctx, stmtRelease, [][]byte{strconv.AppendInt(nil, id, 10)}, nil, func(row [][]byte) error {
			unlocked = string(row[0]) == "t"
			return nil
		})
	})
	if errors.Is(err, errSessionDead) {
		b.lost(id, h)
		return false, nil
	}
	if err != nil {
		if s.isDead() {
			// The session is closed, so the server frees the lock; but we
			// cannot tell whether it was still ours.
			b.lost(id, h)
		}
		return false, err
	}
	b.forget(id, h)
	if b.opts.EnforceTTL {
		b.unspare(s)
	}
	return unlocked && !h.pending, nil
}

// NotifyLoss implements [driver.LossNotifier]: the channel is closed when
// the session that holds the lock dies (terminated, server restarted or
// unreachable, timed out in EnforceTTL mode). A lock this Backend does not
// hold for owner gets a closed channel.
func (b *Backend) NotifyLoss(ctx context.Context, key, owner string) <-chan struct{} {
	h := b.lookup(KeyID(b.opts.Namespace, key), owner)
	if h == nil || h.pending {
		c := make(chan struct{})
		close(c)
		return c
	}
	return h.s.dead
}

// Inspect implements [driver.Inspector]. It asks the server (pg_locks)
// whether, and by which backend, the advisory lock of key is held, and reads
// the holder recorded in dlock_holders for that backend. Holders record
// themselves only with [Options.RecordHolders]: for a key held by one that
// did not (or by a client that is not pglock) Inspect returns an error
// wrapping [errors.ErrUnsupported]; a free key is reported free either way. TTL is the time left in EnforceTTL mode, as the server
// counts it, and zero otherwise. A recorded row is matched to its holder by
// key and backend PID: should a PID be reused by a later backend that holds
// the same key without recording, the earlier owner would be reported.
func (b *Backend) Inspect(ctx context.Context, key string) (driver.Holder, bool, error) {
	id := KeyID(b.opts.Namespace, key)
	var owner []byte
	var token, ttlMS, leftMS *int64
	err := b.pool.QueryRow(ctx, inspectSQL, id).Scan(&owner, &token, &ttlMS, &leftMS)
	if errors.Is(err, pgx.ErrNoRows) {
		return driver.Holder{}, false, nil
	}
	if err != nil {
		return driver.Holder{}, false, fmt.Errorf("pglock: inspect: %w", err)
	}
	if token == nil {
		return driver.Holder{}, false, fmt.Errorf("%w: %s is held, but its holder did not record itself (see Options.RecordHolders)",
			errors.ErrUnsupported, lock.QuoteKey(key))
	}
	h := driver.Holder{Owner: string(owner), Token: uint64(*token)}
	if leftMS != nil {
		h.TTL = time.Duration(*leftMS) * time.Millisecond
	}
	return h, true, nil
}

// List implements [driver.Lister] from the holders recorded in
// dlock_holders, joined with pg_locks: only with [Options.RecordHolders]
// (otherwise it returns an error wrapping errors.ErrUnsupported, as the
// advisory locks are taken on a hash of the key). Keys held by holders
// that do not record themselves are not reported. TTL is as in Inspect.
func (b *Backend) List(ctx context.Context, prefix string, fn func(key string, h driver.Holder) bool) error {
	if !b.opts.RecordHolders {
		return fmt.Errorf("%w: pglock lists keys only when holders record themselves (Options.RecordHolders)", errors.ErrUnsupported)
	}
	rows, err := b.pool.Query(ctx, listSQL, []byte(b.opts.Namespace), []byte(prefix))
	if err != nil {
		return fmt.Errorf("pglock: list: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var key, owner []byte
		var token int64
		var leftMS *int64
		if err := rows.Scan(&key, &owner, &token, &leftMS); err != nil {
			return fmt.Errorf("pglock: list: %w", err)
		}
		h := driver.Holder{Owner: string(owner), Token: uint64(token)}
		if leftMS != nil {
			h.TTL = time.Duration(*leftMS) * time.Millisecond
		}
		if !fn(string(key), h) {
			return nil
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("pglock: list: %w", err)
	}
	return nil
}

// Ping implements [driver.Backend]: a round trip on the pool.
func (b *Backend) Ping(ctx context.Context) error {
	if err := b.pool.Ping(ctx); err != nil {
		return fmt.Errorf("pglock: ping: %w", err)
	}
	return nil
}

// Close stops the health check and closes every session the Backend
// opened, waiting for statements in flight; the server then frees every
// lock they held. It does not close the pool.
func (b *Backend) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return lock.ErrClosed
	}
	b.closed = true
	b.mu.Unlock()
	close(b.stopHealth)
	<-b.healthDone
	b.closeSessions()
	return nil
}

func (b *Backend) closeSessions() {
	b.mu.Lock()
	b.closed = true
	all := make([]*session, 0, len(b.sessions))
	for s := range b.sessions {
		all = append(all, s)
	}
	b.sessions = map[*session]struct{}{}
	b.spares = nil
	b.held = map[int64]*hold{}
	b.mu.Unlock()
	// close waits for the statement in flight; one waiting on a connection
	// gone silent is cut off after OpTimeout, as the health check would.
	for _, s := range all {
		t := time.AfterFunc(b.opts.OpTimeout, s.abort)
		s.close()
		t.Stop()
	}
	b.wg.Wait()
}

// health runs the background health check until Close.
func (b *Backend) health() {
	defer close(b.healthDone)
	t := time.NewTicker(b.opts.HealthInterval)
	defer t.Stop()
	for {
		select {
		case <-b.stopHealth:
			return
		case <-t.C:
		}
		now := time.Now()
		for _, s := range b.stuckSessions(now) {
			s.abort()
		}
		// The pings run beside this loop, one round at a time: a ping on a
		// connection gone silent blocks (statements ignore contexts, see
		// session.run) until the stuck check above cuts it off, and must
		// not stop that check — which also frees the session a refresh is
		// stuck on.
		if b.pinging.CompareAndSwap(false, true) {
			b.wg.Add(1)
			go b.pingSessions()
		}
	}
}

// pingSessions runs the health check's statement on every idle session: a
// failure marks the session dead, which is the point.
func (b *Backend) pingSessions() {
	defer b.wg.Done()
	defer b.pinging.Store(false)
	for _, s := range b.checkable() {
		select {
		case <-b.stopHealth:
			return
		default:
		}
		_, _ = s.tryRun(context.Background(), func(ctx context.Context, c *pgx.Conn) error {
			var pid int32
			if err := c.QueryRow(ctx, pingSQL).Scan(&pid); err != nil {
				return err
			}
			return s.checkPID(pid)
		})
	}
}

// stuckSessions lists the sessions whose statement has run past OpTimeout.
func (b *Backend) stuckSessions(now time.Time) []*session {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []*session
	for s := range b.sessions {
		if s.stuck(now, b.opts.OpTimeout) {
			out = append(out, s)
		}
	}
	return out
}

// checkable lists the sessions the health check may run statements on:
// all but those holding an EnforceTTL lock, whose idle timer must run.
func (b *Backend) checkable() []*session {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []*session
	if b.opts.EnforceTTL {
		out = append(out, b.spares...)
		return out
	}
	for s := range b.sessions {
		if !s.isDead() {
			out = append(out, s)
		}
	}
	return out
}
