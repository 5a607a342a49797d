package zklock

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/dlockgo/dlock/internal/storeutil"
	"github.com/dlockgo/dlock/lock"
	"github.com/dlockgo/dlock/lock/driver"
)

// DefaultRoot is the znode under which the locks live when [Options.Root]
// is empty.
const DefaultRoot = "/dlock"

// Defaults for [Options]: ZooKeeper's own session bounds with its default
// tickTime of 2 s (2 and 20 ticks).
const (
	DefaultSessionTimeout    = 4 * time.Second
	DefaultMaxSessionTimeout = 40 * time.Second
)

// defaultCleanupTimeout bounds each attempt to delete an expired lock when
// Options.Lock.CleanupTimeout is zero.
const defaultCleanupTimeout = 5 * time.Second

// errClosed is returned by the methods of a closed backend.
var errClosed = errors.New("zklock: backend closed")

// Options configure the ZooKeeper store. The zero value, and nil, mean the
// defaults.
type Options struct {
	// Root is the znode under which the locks live (created, with its
	// parents, when missing): lock nodes in Root/l, owner markers in
	// Root/o. Give each application its own root if several share an
	// ensemble. Nothing but dlock may write under it. Default:
	// [DefaultRoot].
	Root string
	// SessionTimeout is the shortest session the backend opens and the
	// base of its session lengths: a lock whose TTL is t lives on a
	// session of SessionTimeout·2ⁿ, the shortest such that is at least t,
	// capped at MaxSessionTimeout. It must not be below the server's
	// minSessionTimeout. Default: [DefaultSessionTimeout].
	SessionTimeout time.Duration
	// MaxSessionTimeout is the longest session the backend opens. It must
	// not be above the server's maxSessionTimeout: a server that granted
	// less than asked would free a lock before its holder is told. Default:
	// [DefaultMaxSessionTimeout].
	MaxSessionTimeout time.Duration
	// AdvisoryTTL lets a lock live as long as its holder's session,
	// refreshed or not: a holder that stays connected keeps its locks until
	// it releases them, and the granted TTL is the session's length. The
	// server still frees the locks of a holder that died or was cut off,
	// one session timeout after it last heard from it.
	//
	// Default false: the TTL holds while the holder lives too, as on the
	// other stores. The backend deletes a lock that was not refreshed
	// within its TTL (a timer per held lock; no goroutine while it waits),
	// and the granted TTL is the one asked for. This is the default because
	// code written against lock.Locker expects a lock it forgets (a cron
	// tick held to its MinHold, a crashed goroutine) to go away after its
	// TTL, not when the process exits.
	AdvisoryTTL bool
	// Logger receives the ZooKeeper client's messages (connections,
	// reconnections) at debug level. Nil means silent.
	Logger *slog.Logger
	// Lock configures the Locker that [New] builds.
	Lock lock.Options
}

// New returns a [lock.Locker] that keeps its locks in the ZooKeeper
// ensemble at servers (host:port each). The Locker opens its own sessions
// (see the package documentation for why) and closes them in Close, which
// frees every lock it still holds.
//
// New returns [lock.ErrNilDatabaseClient] when servers is empty, and an
// error for invalid options. It does not wait for a connection: a store
// that cannot be reached makes the first calls fail.
func New(servers []string, opts *Options) (lock.Locker, error) {
	b, err := newBackend(servers, opts)
	if err != nil {
		return nil, err
	}
	var lo *lock.Options
	if opts != nil {
		lo = &opts.Lock
	}
	return storeutil.NewLocker(b, lo)
}

// NewBackend returns the ZooKeeper store as a [driver.Backend], for
// [lock.New] and the conformance suite. Most users call [New]. The value
// also implements [driver.LossNotifier], [driver.Inspector],
// [driver.Waiter] and [driver.Lister].
func NewBackend(servers []string, opts *Options) (driver.Backend, error) {
	return newBackend(servers, opts)
}

func newBackend(servers []string, opts *Options) (*backend, error) {
	if len(servers) == 0 {
		return nil, lock.ErrNilDatabaseClient
	}
	for _, s := range servers {
		if s == "" {
			return nil, fmt.Errorf("zklock: empty server address in %q", servers)
		}
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Root == "" {
		o.Root = DefaultRoot
	}
	if err := validRoot(o.Root); err != nil {
		return nil, err
	}
	if o.SessionTimeout == 0 {
		o.SessionTimeout = DefaultSessionTimeout
	}
	if o.MaxSessionTimeout == 0 {
		o.MaxSessionTimeout = max(DefaultMaxSessionTimeout, o.SessionTimeout)
	}
	switch {
	case o.SessionTimeout < time.Millisecond:
		return nil, fmt.Errorf("zklock: SessionTimeout %v is below 1ms", o.SessionTimeout)
	case o.MaxSessionTimeout < o.SessionTimeout:
		return nil, fmt.Errorf("zklock: MaxSessionTimeout %v is below SessionTimeout %v", o.MaxSessionTimeout, o.SessionTimeout)
	case o.MaxSessionTimeout > time.Duration(1<<31-1)*time.Millisecond:
		return nil, fmt.Errorf("zklock: MaxSessionTimeout %v does not fit ZooKeeper's 32-bit milliseconds", o.MaxSessionTimeout)
	}
	if o.Lock.CleanupTimeout < 0 {
		return nil, fmt.Errorf("zklock: negative CleanupTimeout %v", o.Lock.CleanupTimeout)
	}
	cleanup := o.Lock.CleanupTimeout
	if cleanup == 0 {
		cleanup = defaultCleanupTimeout
	}
	life, stop := context.WithCancel(context.Background())
	return &backend{
		enforce:  !o.AdvisoryTTL,
		cleanup:  cleanup,
		servers:  append([]string(nil), servers...),
		p:        newPaths(o.Root),
		minS:     o.SessionTimeout.Round(time.Millisecond),
		maxS:     o.MaxSessionTimeout.Round(time.Millisecond),
		log:      o.Logger,
		life:     life,
		stop:     stop,
		sessions: make(map[time.Duration]*session),
		held:     make(map[string]*entry),
		sweepAt:  minSweep,
	}, nil
}

// backend is the driver.Backend. See doc.go for the protocol.
type backend struct {
	servers    []string
	p          paths
	minS, maxS time.Duration
	log        *slog.Logger
	enforce    bool          // !Options.AdvisoryTTL
	cleanup    time.Duration // bounds each deletion of an expired lock

	life context.Context // ends at Close: stops watchers
	stop context.CancelFunc

	mu       sync.Mutex
	closed   bool
	sessions map[time.Duration]*session // by session timeout
	held     map[string]*entry          // locks taken here, by owner
	sweepAt  int
	wg       sync.WaitGroup // calls in flight and watchers
}

const minSweep = 1024

// entry is what the backend remembers of a lock it acquired (or tried to:
// an acquisition whose outcome is unknown keeps its entry, so that the
// clean-up release travels on the same session, after the create).
type entry struct {
	key     string
	s       *session
	gen     *generation // the session incarnation the node belongs to
	czxid   int64       // 0 until known
	granted time.Duration
	// cut is closed when the connection the lock was last confirmed on
	// drops; only watched when strict (granted longer than the session).
	cut    <-chan struct{}
	strict bool
	// settled is closed when the acquisition's request has its answer.
	settled <-chan struct{}
	// exp is the lock's local deadline when the TTL is enforced, nil otherwise.
	exp *expiry
}

// grant returns the TTL a lock asking for ttl gets on session s, and
// whether it is strict (see session.grant).
func (b *backend) grant(s *session, ttl time.Duration) (time.Duration, bool) {
	if b.enforce {
		return ttl, ttl > s.timeout
	}
	return s.grant(ttl)
}

var (
	_ driver.Backend      = (*backend)(nil)
	_ driver.LossNotifier = (*backend)(nil)
	_ driver.Inspector    = (*backend)(nil)
	_ driver.Waiter       = (*backend)(nil)
	_ driver.Lister       = (*backend)(nil)
)

// timeoutFor returns the session timeout for a lock of ttl: minS·2ⁿ, the
// shortest at least ttl, capped at maxS.
func (b *backend) timeoutFor(ttl time.Duration) time.Duration {
	s := b.minS
	for s < ttl && s < b.maxS {
		s *= 2
	}
	return min(s, b.maxS)
}

// session returns the session of timeout d, opening it on first use.
func (b *backend) session(d time.Duration) (*session, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errClosed
	}
	if s := b.sessions[d]; s != nil {
		return s, nil
	}
	s, err := dial(b.servers, d, b.log)
	if err != nil {
		return nil, fmt.Errorf("zklock: connect: %w", err)
	}
	b.sessions[d] = s
	return s, nil
}

// base is the shortest session, used for reads and for locks this backend
// knows nothing about.
func (b *backend) base() (*session, error) { return b.session(b.minS) }

// connFor returns the session a lock of owner was taken on, or the base
// session when it was not taken here.
func (b *backend) connFor(key, owner string) (*entry, *session, error) {
	if e := b.lookup(owner); e != nil && e.key == key {
		return e, e.s, nil
	}
	s, err := b.base()
	return nil, s, err
}

func (b *backend) remember(owner string, e *entry) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.held) >= b.sweepAt {
		for o, old := range b.held {
			if old.gen.ended() {
				delete(b.held, o)
			}
		}
		b.sweepAt = max(minSweep, 2*len(b.held))
	}
	b.held[owner] = e
}

func (b *backend) lookup(owner string) *entry {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.held[owner]
}

// snapshot returns a copy of e, whose fields change under b.mu.
func (b *backend) snapshot(e *entry) entry {
	b.mu.Lock()
	defer b.mu.Unlock()
	return *e
}

func (b *backend) forget(owner string, e *entry) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.held[owner] == e {
		delete(b.held, owner)
	}
}

func (b *backend) Ping(ctx context.Context) error {
	s, err := b.base()
	if err != nil {
		return err
	}
	_, err = call(ctx, b, func() (bool, error) {
		ok, _, err := s.conn.Exists("/")
		return ok, err
	})
	return storeErr(ctx, "ping", err)
}

// Close closes the backend's sessions, which deletes at once every lock
// node they carry, and waits for its goroutines.
func (b *backend) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	sessions := b.sessions
	b.sessions = nil
	b.mu.Unlock()
	b.stopTimers()
	b.stop()
	var wg sync.WaitGroup
	for _, s := range sessions {
		wg.Go(s.close)
	}
	wg.Wait()
	b.wg.Wait()
	return nil
}

// goBackground runs f in a goroutine that Close waits for, and reports
// false (without running f) after Close.
func (b *backend) goBackground(f func()) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		f()
	}()
	return true
}

// call runs f, a blocking request of the ZooKeeper client (which takes no
// context), and returns when it answers or ctx ends, whichever is first.
// An abandoned request finishes in the background: the client answers
// every request, at the latest with an error when its connection drops or
// the backend closes the session.
func call[T any](ctx context.Context, b *backend, f func() (T, error)) (T, error) {
	v, _, err := callStarted(ctx, b, f)
	return v, err
}

// callStarted is call that also reports whether f was started (it then
// runs to its end, maybe after callStarted returned).
func callStarted[T any](ctx context.Context, b *backend, f func() (T, error)) (T, bool, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, false, err
	}
	if ctx.Done() == nil {
		v, err := f() // ctx never ends: no need to wait beside the call
		return v, true, err
	}
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	if !b.goBackground(func() {
		v, err := f()
		ch <- result{v, err}
	}) {
		return zero, false, errClosed
	}
	select {
	case r := <-ch:
		return r.v, true, r.err
	case <-ctx.Done():
		return zero, true, ctx.Err()
	}
}

// storeErr wraps a client error, keeping ctx's error in the chain.
func storeErr(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		err = errors.Join(err, cerr)
	}
	return fmt.Errorf("zklock: %s: %w", op, err)
}
