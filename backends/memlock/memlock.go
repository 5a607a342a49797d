package memlock

import (
	"context"
	"errors"
	"hash/maphash"
	"math/bits"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dlockgo/dlock/lock"
	"github.com/dlockgo/dlock/lock/driver"
)

// Options configure a [Store]. The zero value, and nil, mean the defaults.
type Options struct {
	// Shards is the number of independently locked parts of the map,
	// rounded up to a power of two. More shards mean less contention
	// between goroutines working on different keys. Default: 64.
	Shards int
	// Lock configures the [lock.Locker] that [New] returns (identity,
	// clean-up timeout). [Store.NewLocker] takes its own.
	Lock lock.Options
}

const defaultShards = 64

// Store is an in-memory lock store. It is safe for concurrent use. Lockers
// made from one Store exclude each other.
type Store struct {
	seed   maphash.Seed
	mask   uint64
	shards []shard
	fence  atomic.Uint64

	recs *Records
}

type shard struct {
	mu      sync.Mutex
	entries map[string]entry
	_       [40]byte // keep shards on separate cache lines
}

type entry struct {
	owner   string
	token   uint64
	expires time.Time     // monotonic
	freed   chan struct{} // made by a waiter; closed when the entry goes
}

func (e *entry) live(now time.Time) bool { return now.Before(e.expires) }

func (e *entry) free() {
	if e.freed != nil {
		close(e.freed)
	}
}

// NewStore returns an empty Store. It returns an error for a negative
// number of shards.
func NewStore(opts *Options) (*Store, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Shards < 0 {
		return nil, errors.New("memlock: negative number of shards")
	}
	n := defaultShards
	if o.Shards > 0 {
		n = 1 << bits.Len(uint(o.Shards-1))
	}
	s := &Store{seed: maphash.MakeSeed(), mask: uint64(n - 1), shards: make([]shard, n),
		recs: &Records{recs: make(map[string]record)}}
	for i := range s.shards {
		s.shards[i].entries = make(map[string]entry)
	}
	return s, nil
}

// New returns a Locker on a new Store of its own.
func New(opts *Options) (lock.Locker, error) {
	s, err := NewStore(opts)
	if err != nil {
		return nil, err
	}
	var lo lock.Options
	if opts != nil {
		lo = opts.Lock
	}
	return s.NewLocker(&lo)
}

// NewLocker returns a new client of s: a Locker whose locks exclude those
// of every other Locker on s. Closing it does not affect the others.
func (s *Store) NewLocker(opts *lock.Options) (lock.Locker, error) {
	return lock.New(s.Backend(), opts)
}

// Backend returns a new [driver.Backend] on s, for lock.New and for tests
// of the driver contract. Closing it does not affect s.
func (s *Store) Backend() *Backend { return &Backend{s: s} }

func (s *Store) shard(key string) *shard {
	return &s.shards[maphash.String(s.seed, key)&s.mask]
}

// Backend is one client of a [Store]; it implements [driver.Backend],
// [driver.Inspector], [driver.Waiter] and [driver.Lister]. It is safe for concurrent use.
type Backend struct {
	s      *Store
	closed atomic.Bool
}

var (
	_ driver.Backend   = (*Backend)(nil)
	_ driver.Inspector = (*Backend)(nil)
	_ driver.Waiter    = (*Backend)(nil)
	_ driver.Lister    = (*Backend)(nil)
)

// errClosed is returned by a closed Backend.
var errClosed = errors.New("memlock: backend closed")

func (b *Backend) check(ctx context.Context) error {
	if b.closed.Load() {
		return errClosed
	}
	return ctx.Err()
}

// TryAcquire implements [driver.Backend].
func (b *Backend) TryAcquire(ctx context.Context, key, owner string, ttl time.Duration) (driver.Grant, bool, error) {
	if err := b.check(ctx); err != nil {
		return driver.Grant{}, false, err
	}
	sh := b.s.shard(key)
	now := time.Now()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e, ok := sh.entries[key]; ok {
		if e.live(now) {
			return driver.Grant{}, false, nil
		}
		e.free()
	} else {
		sh.sweep(now)
	}
	tok := b.s.fence.Add(1)
	sh.entries[key] = entry{owner: owner, token: tok, expires: now.Add(ttl)}
	return driver.Grant{Token: tok, TTL: ttl}, true, nil
}

// sweep removes up to two expired entries, picked at random by map
// iteration: amortised clean-up without a timer. sh.mu must be held.
func (sh *shard) sweep(now time.Time) {
	n := 0
	for k, e := range sh.entries {
		if !e.live(now) {
			e.free()
			delete(sh.entries, k)
		}
		if n++; n == 2 {
			return
		}
	}
}

// Refresh implements [driver.Backend].
func (b *Backend) Refresh(ctx context.Context, key, owner string, ttl time.Duration) (time.Duration, bool, error) {
	if err := b.check(ctx); err != nil {
		return 0, false, err
	}
	sh := b.s.shard(key)
	now := time.Now()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.entries[key]
	if !ok || e.owner != owner || !e.live(now) {
		return 0, false, nil
	}
	e.expires = now.Add(ttl)
	sh.entries[key] = e
	return ttl, true, nil
}

// Release implements [driver.Backend].
func (b *Backend) Release(ctx context.Context, key, owner string) (bool, error) {
	if err := b.check(ctx); err != nil {
		return false, err
	}
	sh := b.s.shard(key)
	now := time.Now()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.entries[key]
	if !ok || e.owner != owner {
		return false, nil
	}
	e.free()
	delete(sh.entries, key)
	return e.live(now), nil
}

// Ping implements [driver.Backend].
func (b *Backend) Ping(ctx context.Context) error { return b.check(ctx) }

// Close implements [driver.Backend]. The Store stays usable by its other
// Backends.
func (b *Backend) Close() error {
	b.closed.Store(true)
	return nil
}

// Inspect implements [driver.Inspector].
func (b *Backend) Inspect(ctx context.Context, key string) (driver.Holder, bool, error) {
	if err := b.check(ctx); err != nil {
		return driver.Holder{}, false, err
	}
	sh := b.s.shard(key)
	now := time.Now()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.entries[key]
	if !ok || !e.live(now) {
		return driver.Holder{}, false, nil
	}
	return driver.Holder{Owner: e.owner, Token: e.token, TTL: e.expires.Sub(now)}, true, nil
}

// List implements [driver.Lister]. It visits one shard at a time and calls
// fn without holding any lock of the store.
func (b *Backend) List(ctx context.Context, prefix string, fn func(key string, h driver.Holder) bool) error {
	type item struct {
		key string
		h   driver.Holder
	}
	var batch []item
	for i := range b.s.shards {
		if err := b.check(ctx); err != nil {
			return err
		}
		sh := &b.s.shards[i]
		now := time.Now()
		batch = batch[:0]
		sh.mu.Lock()
		for k, e := range sh.entries {
			if e.live(now) && strings.HasPrefix(k, prefix) {
				batch = append(batch, item{k, driver.Holder{Owner: e.owner, Token: e.token, TTL: e.expires.Sub(now)}})
			}
		}
		sh.mu.Unlock()
		for _, it := range batch {
			if !fn(it.key, it.h) {
				return nil
			}
		}
	}
	return nil
}

// WaitFree implements [driver.Waiter]: it returns when key is released, when
// its holder's TTL runs out, or when ctx ends.
func (b *Backend) WaitFree(ctx context.Context, key string) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	sh := b.s.shard(key)
	now := time.Now()
	sh.mu.Lock()
	e, ok := sh.entries[key]
	if !ok || !e.live(now) {
		sh.mu.Unlock()
		return nil
	}
	if e.freed == nil {
		e.freed = make(chan struct{})
		sh.entries[key] = e
	}
	sh.mu.Unlock()

	t := time.NewTimer(e.expires.Sub(now))
	defer t.Stop()
	select {
	case <-e.freed:
		return nil
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
