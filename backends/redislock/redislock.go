package redislock

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dlockgo/dlock/internal/storeutil"
	"github.com/dlockgo/dlock/lock"
	"github.com/dlockgo/dlock/lock/driver"
)

// Client is the part of a go-redis v9 client that the store uses. Every
// go-redis client satisfies it: [redis.Client] (also as returned by
// [redis.NewFailoverClient] for Sentinel), [redis.ClusterClient],
// [redis.Ring] and [redis.UniversalClient].
type Client interface {
	redis.Scripter
	// Ping is used by [driver.Backend.Ping].
	Ping(ctx context.Context) *redis.StatusCmd
}

// Options configure the store. The zero value, and nil, mean the defaults.
type Options struct {
	// KeyPrefix is prepended to every Redis key the store writes. It may
	// not contain '{' or '}' (the store puts the user's key in a hash tag
	// of its own). Default: "dlock:".
	KeyPrefix string

	// FenceRetention is how long a key's fencing counter outlives the
	// lock's TTL when nobody takes the key again. Tokens are never below
	// the server's clock in microseconds, so a counter that has expired
	// restarts above every earlier token as long as the server clock has
	// not gone back by more than FenceRetention; the counter's expiry keeps
	// Redis from collecting one key per lock ever used (such as the
	// per-tick keys of package cron). A negative value keeps counters
	// forever. Default: 1h.
	FenceRetention time.Duration

	// Lock configures the [lock.Locker] that [New] returns (identity,
	// clean-up timeout); the identity is stored with every lock and
	// reported by [Backend.Inspect]. [NewBackend] ignores it.
	Lock lock.Options
}

// DefaultKeyPrefix is the [Options.KeyPrefix] used when none is given.
const DefaultKeyPrefix = "dlock:"

const defaultFenceRetention = time.Hour

// lateCleanupTimeout bounds the release of an acquisition that the store
// granted after the caller stopped waiting for it.
const lateCleanupTimeout = 5 * time.Second

// New returns a [lock.Locker] that keeps its locks in Redis through client.
// The Locker does not own client: closing the Locker leaves it open.
//
// New returns [lock.ErrNilDatabaseClient] for a nil client and an error for
// invalid options.
func New(client Client, opts *Options) (lock.Locker, error) {
	b, err := NewBackend(client, opts)
	if err != nil {
		return nil, err
	}
	var lo *lock.Options
	if opts != nil {
		lo = &opts.Lock
	}
	return storeutil.NewLocker(b, lo)
}

// Backend is the Redis store as a [driver.Backend]; most users want [New]
// instead. It also implements [driver.Inspector] and [driver.Lister]. A Backend is safe for
// concurrent use.
type Backend struct {
	c       Client
	prefix  string
	fenceMs int64 // fence retention in ms; < 0: keep counters forever
	acquire script
	refresh script
	release script
	inspect script
	// ctxAware: the client was built with ContextTimeoutEnabled, so
	// go-redis ends a call at its context's deadline by itself.
	ctxAware bool
	mu       sync.Mutex
	closed   bool
	inflight sync.WaitGroup // calls the caller stopped waiting for
}

var (
	_ driver.Backend   = (*Backend)(nil)
	_ driver.Inspector = (*Backend)(nil)
)

// NewBackend returns the Redis store as a [driver.Backend], for
// [lock.New] and for tests. Use [New] unless you need the Backend itself.
// [Options.Lock] is ignored.
//
// NewBackend returns [lock.ErrNilDatabaseClient] for a nil client and an
// error for invalid options.
func NewBackend(client Client, opts *Options) (*Backend, error) {
	if isNil(client) {
		return nil, lock.ErrNilDatabaseClient
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.KeyPrefix == "" {
		o.KeyPrefix = DefaultKeyPrefix
	}
	if err := checkPrefix(o.KeyPrefix); err != nil {
		return nil, err
	}
	b := &Backend{
		c:       client,
		prefix:  o.KeyPrefix,
		acquire: newScript(acquireSrc),
		refresh: newScript(refreshSrc),
		release: newScript(releaseSrc),
		inspect: newScript(inspectSrc),
	}
	switch c := client.(type) {
	case *redis.Client:
		b.ctxAware = c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		b.ctxAware = c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		b.ctxAware = c.Options().ContextTimeoutEnabled
	}
	switch r := o.FenceRetention; {
	case r < 0:
		b.fenceMs = -1
	case r == 0:
		b.fenceMs = defaultFenceRetention.Milliseconds()
	default:
		b.fenceMs = millis(r)
	}
	return b, nil
}

func checkPrefix(p string) error {
	for i := 0; i < len(p); i++ {
		if p[i] == '{' || p[i] == '}' {
			return fmt.Errorf("redislock: KeyPrefix %q contains a brace; the store writes its own {hash tag}", p)
		}
	}
	return nil
}

// isNil reports a nil interface, and a nil pointer to one of go-redis's
// clients inside a non-nil interface.
func isNil(c Client) bool {
	switch c := c.(type) {
	case nil:
		return true
	case *redis.Client:
		return c == nil
	case *redis.ClusterClient:
		return c == nil
	case *redis.Ring:
		return c == nil
	}
	return false
}

// millis converts d to whole milliseconds, rounding up: a TTL is never
// granted shorter than asked.
func millis(d time.Duration) int64 {
	ms := int64(d / time.Millisecond)
	if d%time.Millisecond != 0 {
		ms++
	}
	return ms
}

// fenceTTL returns the fence key's TTL in ms for a lock TTL of ms, "0"
// meaning none.
func (b *Backend) fenceTTL(ms int64) int64 {
	if b.fenceMs < 0 {
		return 0
	}
	return ms + b.fenceMs
}

// TryAcquire implements [driver.Backend]. One EVALSHA: SET NX PX and, only
// when that succeeded, the next fencing token. TTLs are whole milliseconds,
// rounded up.
func (b *Backend) TryAcquire(ctx context.Context, key, owner string, ttl time.Duration) (driver.Grant, bool, error) {
	ms := millis(ttl)
	lk, fk := keys(b.prefix, key)
	v, err := b.eval(ctx, opAcquire, &b.acquire, []string{lk, fk}, owner, ms, b.fenceTTL(ms))
	if errors.Is(err, redis.Nil) {
		return driver.Grant{}, false, nil
	}
	if err != nil {
		return driver.Grant{}, false, err
	}
	tok, ok := v.(int64)
	if !ok || tok <= 0 {
		return driver.Grant{}, false, fmt.Errorf("redislock: acquire script returned %v (%T), want a positive integer", v, v)
	}
	return driver.Grant{Token: uint64(tok), TTL: time.Duration(ms) * time.Millisecond}, true, nil
}

// Refresh implements [driver.Backend]: compare-and-pexpire, one EVALSHA.
func (b *Backend) Refresh(ctx context.Context, key, owner string, ttl time.Duration) (time.Duration, bool, error) {
	ms := millis(ttl)
	lk, fk := keys(b.prefix, key)
	v, err := b.eval(ctx, opOther, &b.refresh, []string{lk, fk}, owner, ms, b.fenceTTL(ms))
	if err != nil {
		return 0, false, err
	}
	if v != int64(1) {
		return 0, false, nil
	}
	return time.Duration(ms) * time.Millisecond, true, nil
}

// Release implements [driver.Backend]: compare-and-delete, one EVALSHA.
// The fencing counter stays (until [Options.FenceRetention] has passed).
func (b *Backend) Release(ctx context.Context, key, owner string) (bool, error) {
	lk, _ := keys(b.prefix, key)
	v, err := b.eval(ctx, opOther, &b.release, []string{lk}, owner)
	if err != nil {
		return false, err
	}
	return v == int64(1), nil
}

// Inspect implements [driver.Inspector]: the owner, fencing token and
// remaining TTL of key's holder, read atomically by one EVALSHA.
func (b *Backend) Inspect(ctx context.Context, key string) (driver.Holder, bool, error) {
	lk, fk := keys(b.prefix, key)
	v, err := b.eval(ctx, opOther, &b.inspect, []string{lk, fk})
	if errors.Is(err, redis.Nil) {
		return driver.Holder{}, false, nil
	}
	if err != nil {
		return driver.Holder{}, false, err
	}
	a, _ := v.([]any)
	if len(a) != 3 {
		return driver.Holder{}, false, fmt.Errorf("redislock: inspect script returned %v", v)
	}
	owner, ok1 := a[0].(string)
	tokStr, ok2 := a[1].(string)
	pttl, ok3 := a[2].(int64)
	tok, err := strconv.ParseUint(tokStr, 10, 64)
	if !ok1 || !ok2 || !ok3 || err != nil {
		return driver.Holder{}, false, fmt.Errorf("redislock: inspect script returned %v", v)
	}
	h := driver.Holder{Owner: owner, Token: tok}
	if pttl > 0 {
		h.TTL = time.Duration(pttl) * time.Millisecond
	}
	return h, true, nil
}

// Ping implements [driver.Backend] with PING.
func (b *Backend) Ping(ctx context.Context) error {
	_, err := b.eval(ctx, opPing, nil, nil)
	return err
}

// Close implements [driver.Backend]. It does not close the client; it
// waits for the calls whose callers stopped waiting (see the package
// documentation on contexts) to finish.
func (b *Backend) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.inflight.Wait()
	return nil
}

type op uint8

const (
	opOther   op = iota
	opAcquire    // a late success is released
	opPing       // PING instead of a script
)

// eval runs one script (or PING) and returns its reply. Server errors come
// back wrapped; redis.Nil (the script returned false) comes back as is.
//
// go-redis does not stop a call when its context is cancelled, and honours
// the context's deadline only on a client built with ContextTimeoutEnabled;
// otherwise a call blocks up to the client's ReadTimeout (and its retries).
// eval therefore makes the call itself when ctx cannot end, or when ctx has
// a deadline that the client honours. Otherwise the call runs in a
// goroutine and eval returns as soon as ctx ends: the call finishes in the
// background, Close waits for it, and an acquisition it made after its
// caller left is released. The goroutine costs a hand-off between threads
// on every call, which is why a ctx-aware client with deadlines is faster.
func (b *Backend) eval(ctx context.Context, o op, s *script, keys []string, args ...any) (any, error) {
	if ctx.Done() == nil {
		return b.call(ctx, o, s, keys, args)
	}
	if _, ok := ctx.Deadline(); ok && b.ctxAware {
		return b.call(ctx, o, s, keys, args)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, lock.ErrClosed
	}
	b.inflight.Add(1)
	b.mu.Unlock()

	type result struct {
		v   any
		err error
	}
	done := make(chan result, 1)
	var mu sync.Mutex
	left, sent := false, false // under mu
	go func() {
		defer b.inflight.Done()
		v, err := b.call(ctx, o, s, keys, args)
		mu.Lock()
		gone := left
		if !gone {
			sent = true
			done <- result{v, err} // buffered: never blocks
		}
		mu.Unlock()
		if gone && o == opAcquire && err == nil {
			cctx, cancel := context.WithTimeout(context.Background(), lateCleanupTimeout)
			defer cancel()
			_, _ = b.call(cctx, opOther, &b.release, keys[:1], args[:1])
		}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		mu.Lock()
		left = !sent
		mu.Unlock()
		if !left { // the reply won the race after all
			r := <-done
			return r.v, r.err
		}
		return nil, fmt.Errorf("redislock: stopped waiting for the reply: %w", ctx.Err())
	}
}

// call makes one call to Redis.
func (b *Backend) call(ctx context.Context, o op, s *script, keys []string, args []any) (any, error) {
	var (
		v   any
		err error
	)
	if o == opPing {
		err = b.c.Ping(ctx).Err()
	} else {
		v, err = b.c.EvalSha(ctx, s.sha, keys, args...).Result()
		if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			v, err = b.c.Eval(ctx, s.src, keys, args...).Result()
		}
	}
	switch {
	case err == nil, errors.Is(err, redis.Nil):
		return v, err
	case ctx.Err() != nil && !errors.Is(err, ctx.Err()):
		return nil, fmt.Errorf("redislock: %w (%w)", err, ctx.Err())
	default:
		return nil, fmt.Errorf("redislock: %w", err)
	}
}
