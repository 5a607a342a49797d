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

	"github.com/dlockgo/dlock/internal/storeutil"
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
	// timeout). Its CleanupTimeout also bounds each revocation of a lease
	// the backend no longer needs, including those Close makes of its
	// idle leases.
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
	return storeutil.NewLocker(b, lo)
}

// NewBackend returns the etcd store as a [driver.Backend], for
// [lock.New] and the conformance suite. Most users call [New]. The value
// also implements [driver.LossNotifier], [driver.Inspector],
// [driver.Lister] and [driver.Waiter].
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
		c:         client,
		lc:        clientv3.RetryLeaseClient(client),
		prefix:    o.KeyPrefix,
		cleanup:   cleanup,
		life:      life,
		stop:      stop,
		held:      make(map[string]*held),
		contended: make(map[string]time.Time),
		sweepAt:   minSweep,
		sem:       make(chan struct{}, maxBackgroundRevokes),
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
	spares  []spare          // idle leases of ours, carrying no key
	// contended remembers keys recently found held, by full key: the
	// next attempt on one reads the key before writing anything.
	contended map[string]time.Time
	janitor   *time.Timer // revokes idle spares; nil when none is armed
}

// spare is an idle lease of ours that carries no key: left by a refused
// attempt, a release, or a lock moved to another lease. The next
// acquisition that needs a lease of the same length renews and uses it
// instead of granting a new one, which saves a write through Raft and lets
// the renewal travel together with the transaction.
type spare struct {
	id       clientv3.LeaseID
	ttl      int64     // seconds
	deadline time.Time // local estimate of its expiry
	idle     time.Time // when it was put back
}

// held is what the backend remembers of a lock it acquired: the lease the
// key is attached to. It is a cache: when an entry is missing (never made
// here, or dropped), the methods read the key from etcd instead.
type held struct {
	mu       sync.Mutex // serialises Refresh and Release of one lock
	key      string     // full etcd key
	lease    clientv3.LeaseID
	ttl      int64     // seconds granted
	deadline time.Time // local estimate of the lease's expiry
	// gone is set, under mu, once the lease is no longer the lock's
	// (released, lost, handed on as a spare): a Refresh or Release that
	// was waiting for mu must then not touch it.
	gone bool
}

const minSweep = 1024

const (
	// maxSpares bounds the idle leases a backend keeps.
	maxSpares = 16
	// spareMargin is how long before its estimated expiry a spare is
	// no longer used: its renewal must reach the leader in time. (If it
	// does not, the transaction fails with "lease not found", nothing is
	// written, and the attempt falls back to a new lease.)
	spareMargin = 500 * time.Millisecond
	// spareIdle is how long a spare may stay unused before it is revoked.
	spareIdle = 2 * time.Second
	// contendedFor is how long a key found held makes the next attempts
	// read it first; maxContended bounds how many keys are remembered.
	contendedFor = time.Second
	maxContended = 1024
)

// markContended remembers that k was found held at now.
func (b *backend) markContended(k string, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.contended) >= maxContended {
		for ck, at := range b.contended {
			if now.Sub(at) > contendedFor {
				delete(b.contended, ck)
			}
		}
		if len(b.contended) >= maxContended {
			clear(b.contended)
		}
	}
	b.contended[k] = now
}

// wasContended reports whether k was found held within contendedFor of now,
// and forgets it when not.
func (b *backend) wasContended(k string, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	at, ok := b.contended[k]
	if ok && now.Sub(at) > contendedFor {
		delete(b.contended, k)
		ok = false
	}
	return ok
}

func (b *backend) notContended(k string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.contended, k)
}

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
	spares := b.spares
	b.spares = nil
	if b.janitor != nil && b.janitor.Stop() {
		b.janitor = nil
	}
	b.mu.Unlock()
	b.stop()
	var wg sync.WaitGroup
	for _, sp := range spares {
		wg.Go(func() { b.revoke(sp.id) })
	}
	wg.Wait()
	b.wg.Wait()
	return nil
}

// takeSpare returns an idle lease of ttl seconds that will not expire
// within spareMargin of now.
func (b *backend) takeSpare(ttl int64, now time.Time) (spare, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := len(b.spares) - 1; i >= 0; i-- {
		sp := b.spares[i]
		if sp.ttl == ttl && now.Add(spareMargin).Before(sp.deadline) {
			b.spares = append(b.spares[:i], b.spares[i+1:]...)
			return sp, true
		}
	}
	return spare{}, false
}

// putSpare keeps lease id, which carries no key, for a later acquisition,
// or revokes it when it is not worth keeping.
func (b *backend) putSpare(id clientv3.LeaseID, ttl int64, deadline time.Time) {
	now := time.Now()
	b.mu.Lock()
	if b.closed || len(b.spares) >= maxSpares || !now.Add(spareMargin).Before(deadline) {
		b.mu.Unlock()
		b.revokeLater(id)
		return
	}
	b.spares = append(b.spares, spare{id: id, ttl: ttl, deadline: deadline, idle: now})
	if b.janitor == nil {
		b.janitor = time.AfterFunc(spareIdle, b.sweepSpares)
	}
	b.mu.Unlock()
}

// sweepSpares revokes the spares that have been idle for spareIdle, and
// arms itself again while spares remain.
func (b *backend) sweepSpares() {
	now := time.Now()
	var old []clientv3.LeaseID
	b.mu.Lock()
	b.janitor = nil
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.wg.Add(1) // Close waits for this sweep
	defer b.wg.Done()
	keep := b.spares[:0]
	for _, sp := range b.spares {
		if now.Sub(sp.idle) >= spareIdle {
			old = append(old, sp.id)
		} else {
			keep = append(keep, sp)
		}
	}
	clear(b.spares[len(keep):])
	b.spares = keep
	if len(b.spares) > 0 {
		b.janitor = time.AfterFunc(spareIdle, b.sweepSpares)
	}
	b.mu.Unlock()
	for _, id := range old {
		b.revokeLater(id)
	}
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

// forget marks h gone and drops it from the cache. The caller holds h.mu.
func (b *backend) forget(owner string, h *held) {
	h.gone = true
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

// keepAlive is one lease renewal in flight: sent, its answer not yet read.
// Sending it before another request and reading it after pipelines the two.
type keepAlive struct {
	ctx    context.Context
	cancel context.CancelFunc
	s      pb.Lease_LeaseKeepAliveClient
}

// sendKeepAlive sends a renewal of lease id. It makes one attempt:
// clientv3's KeepAliveOnce retries until ctx ends.
func (b *backend) sendKeepAlive(ctx context.Context, id clientv3.LeaseID) (*keepAlive, error) {
	sctx, cancel := context.WithCancel(ctx)
	s, err := b.lc.LeaseKeepAlive(sctx)
	if err == nil {
		err = s.Send(&pb.LeaseKeepAliveRequest{ID: int64(id)})
	}
	if err != nil {
		cancel()
		return nil, storeErr(ctx, "keep lease alive", err)
	}
	return &keepAlive{ctx: ctx, cancel: cancel, s: s}, nil
}

// wait returns the TTL the lease was renewed for, 0 when the lease does not
// exist (it expired or was revoked).
func (k *keepAlive) wait() (int64, error) {
	defer k.cancel()
	resp, err := k.s.Recv()
	if err != nil {
		return 0, storeErr(k.ctx, "keep lease alive", err)
	}
	_ = k.s.CloseSend()
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
