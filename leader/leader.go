package leader

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/dlockgo/dlock/lock"
	"github.com/dlockgo/dlock/retry"
)

// Info describes a leader.
type Info struct {
	// Identity names the leader (see [Options.Identity]).
	Identity string
	// Term is the leader's fencing token: strictly larger for each new
	// leader of the same election.
	Term uint64
	// Since is when this replica first saw this leader (for its own
	// leadership: when it won).
	Since time.Time
}

// Options configure an [Elector]. The zero value, and nil, mean the
// defaults.
type Options struct {
	// Identity names this replica to the others. Default: hostname, PID
	// and a random suffix ("host-a/4242/1f2e3d").
	Identity string
	// TTL is the lease of leadership: after a crash, the time before
	// another replica can take over. Default: 15s.
	TTL time.Duration
	// Retry configures the campaign's waiting. Default: from 50ms up to
	// TTL/4 (at most 1s) between attempts, until Run's context ends.
	Retry *retry.Options
	// StopOnError makes Run return when fn returns an error. Default: the
	// error is reported (OnStopped, Logger) and the replica campaigns again.
	StopOnError bool
	// OnStarted is called, with the leadership context, when this replica
	// becomes leader, before fn runs.
	OnStarted func(ctx context.Context, leader Info)
	// OnStopped is called when this replica stops leading, with the
	// reason: nil when fn returned nil, fn's error, or the cause of the
	// leadership context (wrapping lock.ErrLockNotHeld when lost,
	// [ErrResigned] on Resign).
	OnStopped func(leader Info, reason error)
	// OnNewLeader is called, from Run's goroutines, whenever this replica
	// sees a new leader (another term), itself included. Watching needs a
	// store that can inspect holders (all dlock stores can); it polls every
	// ObserveInterval.
	OnNewLeader func(leader Info)
	// ObserveInterval is the polling interval for OnNewLeader. Default:
	// TTL/3.
	ObserveInterval time.Duration
	// Logger receives a record per campaign, win and step-down. Default:
	// silent.
	Logger *slog.Logger
}

// ErrResigned is the cause of a leadership context ended by
// [Elector.Resign].
var ErrResigned = errors.New("leader: resigned")

// ErrNoLeader is returned by [Elector.Leader] when nobody leads.
var ErrNoLeader = errors.New("leader: no leader")

// An Elector campaigns for one election key. Its methods are safe for
// concurrent use; Run may be called once at a time.
type Elector struct {
	locker lock.Locker
	key    string
	opts   Options
	retry  retry.Options
	log    *slog.Logger

	mu      sync.Mutex
	running bool
	current *term // while leading
	seen    Info  // last leader observed
}

// term is one leadership of this replica.
type term struct {
	info   Info
	cancel context.CancelCauseFunc
	done   chan struct{} // closed when the lock is released
}

// New returns an Elector for the election named key on locker. It returns
// [lock.ErrNilDatabaseClient] for a nil locker, the key errors of package
// lock for a bad key, and an error for bad options.
func New(locker lock.Locker, key string, opts *Options) (*Elector, error) {
	if locker == nil {
		return nil, lock.ErrNilDatabaseClient
	}
	if err := lock.ValidateKey(key); err != nil {
		return nil, fmt.Errorf("leader: %w", err)
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.TTL < 0 || o.ObserveInterval < 0 {
		return nil, fmt.Errorf("leader: %w: negative TTL or ObserveInterval", lock.ErrInvalidTTL)
	}
	if o.TTL == 0 {
		o.TTL = 15 * time.Second
	}
	if o.ObserveInterval == 0 {
		o.ObserveInterval = o.TTL / 3
	}
	if o.Identity == "" {
		o.Identity = defaultIdentity()
	}
	if len(o.Identity) > lock.MaxIdentityLength {
		return nil, fmt.Errorf("leader: identity is %d bytes, the limit is %d", len(o.Identity), lock.MaxIdentityLength)
	}
	if o.OnNewLeader != nil {
		if _, ok := locker.(lock.Inspector); !ok {
			return nil, fmt.Errorf("leader: OnNewLeader needs a Locker that implements lock.Inspector: %w", errors.ErrUnsupported)
		}
	}
	r := retry.Options{
		InitialInterval: 50 * time.Millisecond,
		MaxInterval:     min(o.TTL/4, time.Second),
	}
	if o.Retry != nil {
		r = *o.Retry
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With(slog.String("election", key), slog.String("identity", o.Identity))
	return &Elector{locker: locker, key: key, opts: o, retry: r, log: log}, nil
}

func defaultIdentity() string {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown-host"
	}
	var b [3]byte
	rand.Read(b[:])
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// Identity returns this replica's identity.
func (e *Elector) Identity() string { return e.opts.Identity }

type termKey struct{}

// TermFrom returns the term of the leadership a context belongs to (the
// context fn runs under), and false for other contexts.
func TermFrom(ctx context.Context) (uint64, bool) {
	t, ok := ctx.Value(termKey{}).(uint64)
	return t, ok
}

// Run campaigns for leadership until ctx ends. Each time this replica wins,
// Run calls fn with a context that ends when leadership ends (lost, Resign,
// or ctx); when fn returns, Run releases leadership at once and campaigns
// again — at once after a loss, and after a pause of twice the retry
// interval when fn returned or failed or the replica resigned, so that a
// standby can take over and a fn that returns at once does not spin. fn
// should return promptly when its context ends.
//
// Run returns ctx's error when ctx ends, fn's error when StopOnError is
// set, and an error when called while another Run is going.
func (e *Elector) Run(ctx context.Context, fn func(ctx context.Context) error) error {
	if fn == nil {
		return fmt.Errorf("leader: %w: nil func", lock.ErrNilConfig)
	}
	e.mu.Lock()
	if e.running {
		e.mu.Unlock()
		return errors.New("leader: Run is already running")
	}
	e.running = true
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		e.running = false
		e.mu.Unlock()
	}()

	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, stopObserving := context.WithCancel(ctx)
	defer stopObserving()
	if e.opts.OnNewLeader != nil {
		wg.Go(func() { e.observe(ctx) })
	}

	actx := lock.WithIdentity(ctx, e.opts.Identity)
	for {
		e.log.Debug("leader: campaigning")
		lk, err := retry.Acquire(actx, e.locker, e.key, e.opts.TTL, &e.retry)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// A store failure: keep campaigning, after a pause.
			e.log.Warn("leader: campaign failed", slog.Any("err", err))
			if !sleep(ctx, e.retry.MaxInterval+e.retry.InitialInterval) {
				return ctx.Err()
			}
			continue
		}
		reason := e.lead(ctx, lk, fn)
		lost := errors.Is(reason, lock.ErrLockNotHeld)
		if e.opts.StopOnError && reason != nil && !lost && !errors.Is(reason, ErrResigned) && ctx.Err() == nil {
			return reason
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !lost {
			// fn returned, failed, or resigned: give the standbys a head
			// start, or this replica might win again at once — and a fn
			// that returns at once would otherwise spin on the store.
			if !sleep(ctx, 2*max(e.retry.MaxInterval, e.retry.InitialInterval)) {
				return ctx.Err()
			}
		}
	}
}

// lead runs one term: fn under the held lock, then the release. It returns
// why the term ended (nil when fn returned nil on its own).
func (e *Elector) lead(ctx context.Context, lk lock.Lock, fn func(context.Context) error) (reason error) {
	info := Info{Identity: e.opts.Identity, Term: lk.Token(), Since: time.Now()}
	held, stop := lock.Hold(ctx, lk, nil)
	lctx, cancel := context.WithCancelCause(context.WithValue(held, termKey{}, info.Term))
	t := &term{info: info, cancel: cancel, done: make(chan struct{})}
	e.mu.Lock()
	e.current = t
	e.mu.Unlock()
	e.log.Info("leader: elected", slog.Uint64("term", info.Term))
	e.notice(info)
	if e.opts.OnStarted != nil {
		e.opts.OnStarted(lctx, info)
	}

	err := call(lctx, fn)
	switch cause := context.Cause(lctx); {
	case err != nil && !(lctx.Err() != nil && errors.Is(err, lctx.Err())):
		reason = err
	case lctx.Err() != nil:
		reason = cause
	}
	cancel(nil)
	if rerr := stop(); rerr != nil && !errors.Is(rerr, lock.ErrLockNotHeld) {
		e.log.Warn("leader: release failed; the lease will expire", slog.Any("err", rerr))
	}
	e.mu.Lock()
	e.current = nil
	e.mu.Unlock()
	close(t.done)
	e.log.Info("leader: stepped down", slog.Uint64("term", info.Term), slog.Any("reason", reason))
	if e.opts.OnStopped != nil {
		e.opts.OnStopped(info, reason)
	}
	return reason
}

// call runs fn, turning a panic into an error: leadership must be released
// whatever fn does.
func call(ctx context.Context, fn func(context.Context) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("leader: fn panicked: %v", r)
		}
	}()
	return fn(ctx)
}

// Resign ends this replica's leadership, if it leads: it cancels the
// leadership context (cause [ErrResigned]), waits for fn to return and the
// lock to be released, and returns. Run then campaigns again after a short
// pause. Resign returns ctx's error if ctx ends first, and nil when this
// replica was not leading.
func (e *Elector) Resign(ctx context.Context) error {
	e.mu.Lock()
	t := e.current
	e.mu.Unlock()
	if t == nil {
		return nil
	}
	t.cancel(ErrResigned)
	select {
	case <-t.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// IsLeader reports whether this replica leads now, as far as it knows.
func (e *Elector) IsLeader() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.current != nil
}

// Leader returns the current leader, asking the store. It returns
// [ErrNoLeader] when nobody leads, and an error wrapping
// [errors.ErrUnsupported] when the Locker cannot inspect holders.
func (e *Elector) Leader(ctx context.Context) (Info, error) {
	in, ok := e.locker.(lock.Inspector)
	if !ok {
		return Info{}, fmt.Errorf("leader: the Locker cannot inspect holders: %w", errors.ErrUnsupported)
	}
	h, held, err := in.Inspect(ctx, e.key)
	if err != nil {
		return Info{}, fmt.Errorf("leader: %w", err)
	}
	if !held {
		return Info{}, ErrNoLeader
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.current != nil && e.current.info.Term == h.Token {
		return e.current.info, nil
	}
	if e.seen.Term == h.Token {
		return e.seen, nil
	}
	return Info{Identity: h.Identity, Term: h.Token, Since: time.Now()}, nil
}

// observe polls the store for the leader and reports changes.
func (e *Elector) observe(ctx context.Context) {
	t := time.NewTicker(e.opts.ObserveInterval)
	defer t.Stop()
	for {
		if info, err := e.Leader(ctx); err == nil {
			e.notice(info)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// notice reports info to OnNewLeader if it is a term not seen before.
func (e *Elector) notice(info Info) {
	e.mu.Lock()
	if info.Term <= e.seen.Term {
		e.mu.Unlock()
		return
	}
	e.seen = info
	e.mu.Unlock()
	if e.opts.OnNewLeader != nil {
		e.opts.OnNewLeader(info)
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
