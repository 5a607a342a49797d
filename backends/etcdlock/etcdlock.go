package etcdlock

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dlockgo/dlock/lock"
	"github.com/dlockgo/dlock/lock/driver"
)

// DefaultKeyPrefix is the prefix put before every key when
// [Options.KeyPrefix] is empty.
const DefaultKeyPrefix = "/dlock/"

// defaultCleanupTimeout bounds the background revocation of a lease that
// a failed attempt left behind, when Options.Lock.CleanupTimeout is zero.
const defaultCleanupTimeout = 5 * time.Second

// maxBackgroundRevokes bounds the revocations that run behind the caller's
// back; past it a failed attempt revokes its lease before it returns.
const maxBackgroundRevokes = 16

// Options configure the etcd store. The zero value, and nil, mean the
// defaults.
type Options struct {
	// KeyPrefix is put before every lock key; the etcd key is KeyPrefix
	// followed by the key's bytes, unchanged. Give each application its
	// own prefix if several share a cluster. Nothing but dlock may write
	// under it. Default: [DefaultKeyPrefix].
	KeyPrefix string
	// Lock configures the Locker that [New] builds (identity, clean-up
	// timeout). Its CleanupTimeout also bounds the background revocation
	// of leases left by failed attempts.
	Lock lock.Options
}

// New returns a [lock.Locker] that keeps its locks in etcd through client.
// The Locker does not own client: close the client after the Locker.
//
// New returns [lock.ErrNilDatabaseClient] when client is nil, and an error
// for invalid options.
func New(client *clientv3.Client, opts *Options) (lock.Locker, error) {
	b, err := newBackend(client, opts)
	if err != nil {
		return nil, err
	}
	var lo *lock.Options
	if opts != nil {
		lo = &opts.Lock
	}
	l, err := lock.New(b, lo)
	if err != nil {
		_ = b.Close()
		return nil, err
	}
	return l, nil
}

// NewBackend returns the etcd store as a [driver.Backend], for
// [lock.New] and the conformance suite. Most users call [New]. The value
// also implements [driver.LossNotifier], [driver.Inspector] and
// [driver.Waiter].
func NewBackend(client *clientv3.Client, opts *Options) (driver.Backend, error) {
	return newBackend(client, opts)
}

func newBackend(client *clientv3.Client, opts *Options) (*backend, error) {
	if client == nil {
		return nil, lock.ErrNilDatabaseClient
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.KeyPrefix == "" {
		o.KeyPrefix = DefaultKeyPrefix
	}
	if o.Lock.CleanupTimeout < 0 {
		return nil, fmt.Errorf("etcdlock: negative CleanupTimeout %v", o.Lock.CleanupTimeout)
	}
	cleanup := o.Lock.CleanupTimeout
	if cleanup == 0 {
		cleanup = defaultCleanupTimeout
	}
	life, stop := context.WithCancel(context.Background())
	return &backend{
		c:       client,
		lc:      clientv3.RetryLeaseClient(client),
		prefix:  o.KeyPrefix,
		cleanup: cleanup,
		life:    life,
		stop:    stop,
		held:    make(map[string]*held),
		sweepAt: minSweep,
		sem:     make(chan struct{}, maxBackgroundRevokes),
	}, nil
}

// backend is the driver.Backend. See doc.go for the protocol.
type backend struct {
	c       *clientv3.Client
	lc      pb.LeaseClient // for grants with an ID we chose, and one-shot keepalives
	prefix  string
	cleanup time.Duration

	life context.Context // ends at Close: stops watchers
	stop context.CancelFunc

	// minTTL is the shortest lease, in seconds, that the server granted
	// when asked for less (0 until seen). Refresh compares with it to tell
	// whether a new TTL needs a new lease.
	minTTL atomic.Int64

	mu      sync.Mutex
	closed  bool
	held    map[string]*held // the leases of locks acquired here, by owner
	sweepAt int              // size of held at which expired entries are dropped
	wg      sync.WaitGroup   // watchers and background revocations
	sem     chan struct{}    // slots for background revocations
}

// held is what the backend remembers of a lock it acquired: the lease the
// key is attached to. It is a cache: when an entry is missing (never made
// here, or dropped), the methods read the key from etcd instead.
type held struct {
	mu       sync.Mutex // serialises Refresh and Release of one lock
	key      string     // full etcd key
	lease    clientv3.LeaseID
	ttl      int64     // seconds granted
	deadline time.Time // local estimate of the lease's expiry, for sweeping
}

const minSweep = 1024

var (
	_ driver.Backend      = (*backend)(nil)
	_ driver.LossNotifier = (*backend)(nil)
	_ driver.Inspector    = (*backend)(nil)
	_ driver.Waiter       = (*backend)(nil)
)

func (b *backend) Ping(ctx context.Context) error {
	// A linearizable read: it succeeds only when a quorum with a leader
	// answers, which is what an acquisition needs.
	_, err := b.c.Get(ctx, b.prefix, clientv3.WithCountOnly())
	return storeErr(ctx, "ping", err)
}

func (b *backend) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	b.stop()
	b.wg.Wait()
	return nil
}

// remember records the lease of a lock acquired (or re-found) here. When
// the cache has grown, entries whose lease must have expired are dropped
// first: such locks were never released by their holder.
func (b *backend) remember(owner string, h *held) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.held) >= b.sweepAt {
		now := time.Now()
		for o, e := range b.held {
			if e.mu.TryLock() {
				if now.After(e.deadline) {
					delete(b.held, o)
				}
				e.mu.Unlock()
			}
		}
		b.sweepAt = max(minSweep, 2*len(b.held))
	}
	b.held[owner] = h
}

func (b *backend) lookup(owner string) *held {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.held[owner]
}

func (b *backend) forget(owner string, h *held) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.held[owner] == h {
		delete(b.held, owner)
	}
}

// leaseSeconds converts ttl to the lease TTL to ask for: whole seconds,
// rounded up, and at least the server's minimum once it is known.
func (b *backend) leaseSeconds(ttl time.Duration) int64 {
	s := int64((ttl + time.Second - 1) / time.Second)
	return max(s, 1, b.minTTL.Load())
}

// grant creates a lease of ttl seconds under an ID chosen here, so that a
// grant whose answer was lost can still be revoked.
func (b *backend) grant(ctx context.Context, ttl int64) (clientv3.LeaseID, int64, error) {
	id := clientv3.LeaseID(rand.Int64N(1<<63-1) + 1)
	resp, err := b.lc.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: int64(id), TTL: ttl})
	if err == nil && resp.Error != "" {
		err = errors.New(resp.Error)
	}
	if err != nil {
		// The grant may have been applied: revoke the ID we chose.
		b.revokeLater(id)
		return 0, 0, storeErr(ctx, "grant lease", err)
	}
	if resp.TTL > ttl && resp.TTL > b.minTTL.Load() {
		b.minTTL.Store(resp.TTL)
	}
	return id, resp.TTL, nil
}

// keepAliveOnce renews lease id once and returns the TTL it was renewed
// for, or 0 when the lease does not exist (it expired or was revoked). It
// makes one attempt: clientv3's KeepAliveOnce retries until ctx ends.
func (b *backend) keepAliveOnce(ctx context.Context, id clientv3.LeaseID) (int64, error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := b.lc.LeaseKeepAlive(sctx)
	if err != nil {
		return 0, storeErr(ctx, "keep lease alive", err)
	}
	if err := s.Send(&pb.LeaseKeepAliveRequest{ID: int64(id)}); err != nil {
		return 0, storeErr(ctx, "keep lease alive", err)
	}
	resp, err := s.Recv()
	if err != nil {
		return 0, storeErr(ctx, "keep lease alive", err)
	}
	_ = s.CloseSend()
	return max(resp.TTL, 0), nil
}

// revoke revokes lease id, bounded by the clean-up timeout and whatever
// the caller's ctx was. Its error is of no use to anyone: a lease that
// could not be revoked expires after its TTL.
func (b *backend) revoke(id clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), b.cleanup)
	defer cancel()
	_, _ = b.c.Revoke(ctx, id)
}

// revokeLater revokes lease id in the background, so that a refused
// attempt costs its caller no extra round trip. When too many revocations
// are under way, or after Close, it revokes before returning instead.
func (b *backend) revokeLater(id clientv3.LeaseID) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		b.revoke(id)
		return
	}
	select {
	case b.sem <- struct{}{}:
	default:
		b.mu.Unlock()
		b.revoke(id)
		return
	}
	b.wg.Add(1)
	b.mu.Unlock()
	go func() {
		defer b.wg.Done()
		defer func() { <-b.sem }()
		b.revoke(id)
	}()
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

// storeErr wraps a client error, keeping ctx's error in the chain.
func storeErr(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	err = clientv3.ContextError(ctx, err)
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		err = errors.Join(err, cerr)
	}
	return fmt.Errorf("etcdlock: %s: %w", op, err)
}

func seconds(s int64) time.Duration { return time.Duration(s) * time.Second }
