package lock

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dlockgo/dlock/lock/driver"
)

// Options configure the Locker built by [New]. The zero value, and nil, mean
// the defaults.
type Options struct {
	// Identity names this process (or this Locker) to the other holders: it
	// is stored with every lock, so that an inspecting tool or a leader
	// observer can say who holds a key. At most [MaxIdentityLength] bytes.
	// Default: none.
	Identity string
	// CleanupTimeout bounds the background release that follows an
	// ambiguous acquisition (the store failed to answer, or ctx ended while
	// it was asked) and the release in [Hold]'s stop function.
	// Default: 5s.
	CleanupTimeout time.Duration
}

const defaultCleanupTimeout = 5 * time.Second

// New returns the Locker that every store shares: it validates keys and
// TTLs, gives each acquisition its own random 128-bit owner token, wraps
// errors with the operation and the key, and cleans up after ambiguous
// acquisitions. Stores offer one-line constructors that call New; users
// rarely call it themselves. The Locker owns b: Close closes it.
//
// New returns [ErrNilDatabaseClient] for a nil backend and an error for
// invalid options.
func New(b driver.Backend, opts *Options) (Locker, error) {
	if b == nil {
		return nil, ErrNilDatabaseClient
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	if len(o.Identity) > MaxIdentityLength {
		return nil, fmt.Errorf("lock: identity is %d bytes, the limit is %d", len(o.Identity), MaxIdentityLength)
	}
	if o.CleanupTimeout < 0 {
		return nil, fmt.Errorf("lock: negative CleanupTimeout %v", o.CleanupTimeout)
	}
	if o.CleanupTimeout == 0 {
		o.CleanupTimeout = defaultCleanupTimeout
	}
	l := &locker{b: b, opts: o}
	if o.Identity != "" {
		l.suffix = ":" + o.Identity
	}
	l.loss, _ = b.(driver.LossNotifier)
	l.waiter, _ = b.(driver.Waiter)
	l.inspector, _ = b.(driver.Inspector)
	l.lister, _ = b.(driver.Lister)
	return l, nil
}

type identityKey struct{}

// WithIdentity returns a context that makes Acquire, on a Locker from
// [New], store identity with the lock instead of the Locker's own
// [Options.Identity]. It lets several actors share one Locker yet be told
// apart by an [Inspector] (leader election uses it). identity is at most
// [MaxIdentityLength] bytes; Acquire rejects a longer one.
func WithIdentity(ctx context.Context, identity string) context.Context {
	return context.WithValue(ctx, identityKey{}, identity)
}

// OwnerIdentity returns the identity part of an owner string made by a
// Locker from [New] (see [Options.Identity]), or "" when it has none.
func OwnerIdentity(owner string) string {
	if len(owner) > ownerHexLen && owner[ownerHexLen] == ':' {
		return owner[ownerHexLen+1:]
	}
	return ""
}

const ownerHexLen = 32 // 128 bits

type locker struct {
	b         driver.Backend
	opts      Options
	suffix    string // ":" + identity, or ""
	loss      driver.LossNotifier
	waiter    driver.Waiter
	inspector driver.Inspector
	lister    driver.Lister

	closed atomic.Bool
	mu     sync.Mutex     // orders wg.Add against Close's Wait
	closer bool           // Close has begun (under mu)
	wg     sync.WaitGroup // background clean-ups
}

var (
	_ Locker    = (*locker)(nil)
	_ Waiter    = (*locker)(nil)
	_ Inspector = (*locker)(nil)
	_ Lister    = (*locker)(nil)
)

func (l *locker) newOwner(ctx context.Context) (string, error) {
	var raw [ownerHexLen / 2]byte
	rand.Read(raw[:]) // never fails (crypto/rand, Go ≥ 1.24)
	var buf [ownerHexLen + 1 + MaxIdentityLength]byte
	hex.Encode(buf[:ownerHexLen], raw[:])
	n := ownerHexLen + copy(buf[ownerHexLen:], l.suffix)
	if id, ok := ctx.Value(identityKey{}).(string); ok {
		if len(id) > MaxIdentityLength {
			return "", fmt.Errorf("lock: identity is %d bytes, the limit is %d", len(id), MaxIdentityLength)
		}
		n = ownerHexLen
		if id != "" {
			buf[n] = ':'
			n += 1 + copy(buf[n+1:], id)
		}
	}
	return string(buf[:n]), nil // the only allocation
}

func (l *locker) Acquire(ctx context.Context, key string, ttl time.Duration) (Lock, error) {
	if err := ValidateKey(key); err != nil {
		return nil, opError("acquire", key, err)
	}
	if ttl <= 0 {
		return nil, opError("acquire", key, fmt.Errorf("%w: %v", ErrInvalidTTL, ttl))
	}
	if l.closed.Load() {
		return nil, opError("acquire", key, ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return nil, opError("acquire", key, err)
	}
	owner, err := l.newOwner(ctx)
	if err != nil {
		return nil, opError("acquire", key, err)
	}
	start := time.Now()
	g, ok, err := l.b.TryAcquire(ctx, key, owner, ttl)
	if err != nil {
		// The store may have applied the acquisition and lost the reply;
		// nobody would ever release it. Owner tokens are unique, so a
		// release can only ever free our own claim.
		l.cleanup(key, owner)
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			err = errors.Join(err, cerr)
		}
		return nil, opError("acquire", key, err)
	}
	if !ok {
		return nil, opError("acquire", key, ErrLockNotAcquired)
	}
	expiry := start.Add(g.TTL)
	if elapsed := time.Since(start); elapsed >= g.TTL {
		// The answer came after the lock could have expired (a reply held
		// up by the network, a stalled machine): another holder may
		// already have it, so it must not be handed out as held.
		l.cleanup(key, owner)
		return nil, opError("acquire", key, fmt.Errorf("%w: the store's grant came %v after the request, past the TTL of %v",
			ErrLockNotHeld, elapsed.Round(time.Microsecond), g.TTL))
	}
	h := &handle{l: l, key: key, owner: owner, token: g.Token}
	h.ttl.Store(int64(g.TTL))
	h.expiry = expiry
	return h, nil
}

// cleanup releases owner's claim on key in the background, bounded by
// CleanupTimeout. Close waits for it.
func (l *locker) cleanup(key, owner string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closer {
		return
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), l.opts.CleanupTimeout)
		defer cancel()
		_, _ = l.b.Release(ctx, key, owner) // best effort: the TTL frees it otherwise
	}()
}

// WaitFree implements [Waiter] by forwarding to the store's driver.Waiter.
func (l *locker) WaitFree(ctx context.Context, key string) error {
	if err := ValidateKey(key); err != nil {
		return opError("wait", key, err)
	}
	if l.closed.Load() {
		return opError("wait", key, ErrClosed)
	}
	if l.waiter == nil {
		return opError("wait", key, errors.ErrUnsupported)
	}
	if err := l.waiter.WaitFree(ctx, key); err != nil {
		return opError("wait", key, err)
	}
	return nil
}

// Inspect implements [Inspector] by forwarding to the store's
// driver.Inspector.
func (l *locker) Inspect(ctx context.Context, key string) (Holder, bool, error) {
	if err := ValidateKey(key); err != nil {
		return Holder{}, false, opError("inspect", key, err)
	}
	if l.closed.Load() {
		return Holder{}, false, opError("inspect", key, ErrClosed)
	}
	if l.inspector == nil {
		return Holder{}, false, opError("inspect", key, errors.ErrUnsupported)
	}
	h, ok, err := l.inspector.Inspect(ctx, key)
	if err != nil {
		return Holder{}, false, opError("inspect", key, err)
	}
	if !ok {
		return Holder{}, false, nil
	}
	return Holder{Identity: OwnerIdentity(h.Owner), Token: h.Token, TTL: h.TTL}, true, nil
}

// List implements [Lister] by forwarding to the store's driver.Lister.
func (l *locker) List(ctx context.Context, prefix string, fn func(key string, h Holder) bool) error {
	if l.closed.Load() {
		return fmt.Errorf("list: %w", ErrClosed)
	}
	if l.lister == nil {
		return fmt.Errorf("list: %w", errors.ErrUnsupported)
	}
	err := l.lister.List(ctx, prefix, func(key string, h driver.Holder) bool {
		return fn(key, Holder{Identity: OwnerIdentity(h.Owner), Token: h.Token, TTL: h.TTL})
	})
	if err != nil {
		return fmt.Errorf("list: %w", err)
	}
	return nil
}

func (l *locker) Ping(ctx context.Context) error {
	if l.closed.Load() {
		return fmt.Errorf("ping: %w", ErrClosed)
	}
	if err := l.b.Ping(ctx); err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	return nil
}

func (l *locker) Close() error {
	if l.closed.Swap(true) {
		return ErrClosed
	}
	l.mu.Lock()
	l.closer = true
	l.mu.Unlock()
	l.wg.Wait()
	return l.b.Close()
}

// handle is the Lock returned by locker.Acquire.
type handle struct {
	l     *locker
	key   string
	owner string
	token uint64
	ttl   atomic.Int64 // time.Duration

	mu     sync.Mutex
	expiry time.Time // start of the last successful acquire/refresh + TTL
	gone   bool      // released, or the store said it is not ours
}

var (
	_ Lock         = (*handle)(nil)
	_ Expirer      = (*handle)(nil)
	_ LossNotifier = (*handle)(nil)
)

func (h *handle) Key() string        { return h.key }
func (h *handle) Token() uint64      { return h.token }
func (h *handle) TTL() time.Duration { return time.Duration(h.ttl.Load()) }

// Expiry implements [Expirer].
func (h *handle) Expiry() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.expiry
}

// NotifyLoss implements [LossNotifier].
func (h *handle) NotifyLoss(ctx context.Context) <-chan struct{} {
	if h.l.loss == nil {
		return nil
	}
	return h.l.loss.NotifyLoss(ctx, h.key, h.owner)
}

func (h *handle) isGone() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.gone
}

func (h *handle) Refresh(ctx context.Context, ttl time.Duration) error {
	if ttl <= 0 {
		return opError("refresh", h.key, fmt.Errorf("%w: %v", ErrInvalidTTL, ttl))
	}
	if h.l.closed.Load() {
		return opError("refresh", h.key, ErrClosed)
	}
	if h.isGone() {
		return opError("refresh", h.key, ErrLockNotHeld)
	}
	if err := ctx.Err(); err != nil {
		return opError("refresh", h.key, err)
	}
	start := time.Now()
	granted, ok, err := h.l.b.Refresh(ctx, h.key, h.owner, ttl)
	if err != nil {
		return opError("refresh", h.key, err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !ok || h.gone {
		h.gone = true
		return opError("refresh", h.key, ErrLockNotHeld)
	}
	h.ttl.Store(int64(granted))
	if e := start.Add(granted); e.After(h.expiry) {
		h.expiry = e
	}
	return nil
}

func (h *handle) Release(ctx context.Context) error {
	if h.l.closed.Load() {
		return opError("release", h.key, ErrClosed)
	}
	if h.isGone() {
		return opError("release", h.key, ErrLockNotHeld)
	}
	if err := ctx.Err(); err != nil {
		return opError("release", h.key, err)
	}
	ok, err := h.l.b.Release(ctx, h.key, h.owner)
	if err != nil {
		return opError("release", h.key, err)
	}
	h.mu.Lock()
	h.gone = true
	h.mu.Unlock()
	// The store frees an owner's lock at most once, so ok is the answer,
	// even when a concurrent Release that lost the race (ok == false)
	// marked the handle gone before this one got back.
	if !ok {
		return opError("release", h.key, ErrLockNotHeld)
	}
	return nil
}
