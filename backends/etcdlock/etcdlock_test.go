package etcdlock_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dlockgo/dlock/backends/etcdlock"
	"github.com/dlockgo/dlock/internal/leakcheck"
	"github.com/dlockgo/dlock/internal/testenv"
	"github.com/dlockgo/dlock/lock"
	"github.com/dlockgo/dlock/lock/driver"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

func newLocker(t testing.TB, c *clientv3.Client) lock.Locker {
	t.Helper()
	l, err := etcdlock.New(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func newBackend(t testing.TB, c *clientv3.Client) driver.Backend {
	t.Helper()
	b, err := etcdlock.NewBackend(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func TestNew_NilClient(t *testing.T) {
	if _, err := etcdlock.New(nil, nil); !errors.Is(err, lock.ErrNilDatabaseClient) {
		t.Fatalf("New(nil): %v, want ErrNilDatabaseClient", err)
	}
	if _, err := etcdlock.NewBackend(nil, nil); !errors.Is(err, lock.ErrNilDatabaseClient) {
		t.Fatalf("NewBackend(nil): %v, want ErrNilDatabaseClient", err)
	}
}

// TestRoundTrips counts the RPCs of each operation with a gRPC interceptor
// (a keepalive stream counts as one: one request, one answer).
func TestRoundTrips(t *testing.T) {
	counter := newRPCCounter()
	c := newClient(t, testenv.Etcd, counter)
	l := newLocker(t, c)
	ctx := ctxT(t)
	key := randomKey(t)

	counter.take()
	lk, err := l.Acquire(ctx, key, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cold := counter.take()
	if _, err := l.Acquire(ctx, key, 3*time.Second); !errors.Is(err, lock.ErrLockNotAcquired) {
		t.Fatalf("second acquire: %v", err)
	}
	refused := counter.take()
	if _, err := l.Acquire(ctx, key, 3*time.Second); !errors.Is(err, lock.ErrLockNotAcquired) {
		t.Fatalf("third acquire: %v", err)
	}
	polled := counter.take()
	if err := lk.Refresh(ctx, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	ref := counter.take()
	if err := lk.Refresh(ctx, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	refNew := counter.take()
	if err := lk.Release(ctx); err != nil {
		t.Fatal(err)
	}
	rel := counter.take()
	lk, err = l.Acquire(ctx, randomKey(t), 3*time.Second) // on a spare lease
	if err != nil {
		t.Fatal(err)
	}
	warm := counter.take()
	if err := lk.Release(ctx); err != nil {
		t.Fatal(err)
	}
	counter.take()
	t.Logf("RPCs: acquire on a new lease %v; refused acquire %v; acquire of a key just found held %v; "+
		"acquire on a spare lease %v (pipelined); refresh %v (pipelined); refresh with a new TTL %v; release %v",
		cold, refused, polled, warm, ref, refNew, rel)
	for _, tc := range []struct {
		name string
		got  map[string]int
		want map[string]int
	}{
		{"acquire on a new lease", cold, map[string]int{"LeaseGrant": 1, "Txn": 1}},
		{"refused acquire", refused, map[string]int{"LeaseGrant": 1, "Txn": 1}},
		{"acquire of a key just found held", polled, map[string]int{"Range": 1}},
		{"acquire on a spare lease", warm, map[string]int{"LeaseKeepAlive": 1, "Txn": 1}},
		{"refresh", ref, map[string]int{"LeaseKeepAlive": 1, "Range": 1}},
		{"refresh with a new TTL", refNew, map[string]int{"LeaseGrant": 1, "Txn": 1}},
		{"release", rel, map[string]int{"Txn": 1}},
	} {
		if fmt.Sprint(tc.got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: RPCs %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}

// TestLeases_NoneLeftAfterClose checks that every lease the backend granted
// is gone once its locks are released and the Locker is closed: refused
// attempts, releases, moved locks and failed attempts leave none behind.
func TestLeases_NoneLeftAfterClose(t *testing.T) {
	counter := newRPCCounter()
	c := newClient(t, testenv.Etcd, counter)
	l, err := etcdlock.New(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	key := randomKey(t)
	a, err := l.Acquire(ctx, key, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := l.Acquire(ctx, key, 30*time.Second); !errors.Is(err, lock.ErrLockNotAcquired) {
			t.Fatalf("acquire of a held key: %v", err)
		}
	}
	if err := a.Refresh(ctx, 20*time.Second); err != nil { // moves the key
		t.Fatal(err)
	}
	counter.failNextAfter("Txn", errors.New("reply lost"))
	if _, err := l.Acquire(ctx, randomKey(t), 10*time.Second); err == nil {
		t.Fatal("acquire with a lost reply succeeded")
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	leases := counter.grantedLeases()
	if len(leases) < 3 {
		t.Fatalf("only %d leases granted", len(leases))
	}
	for _, id := range leases {
		r, err := c.TimeToLive(ctx, clientv3.LeaseID(id))
		if err != nil {
			t.Fatal(err)
		}
		if r.TTL != -1 {
			t.Errorf("lease %x still alive after Close (TTL %ds, keys %q)", id, r.TTL, r.Keys)
		}
	}
	t.Logf("%d leases granted, none left", len(leases))
}

func TestAcquire_GrantsWholeSecondsAtLeastTheServerMinimum(t *testing.T) {
	c := newClient(t, testenv.Etcd, nil)
	l := newLocker(t, c)
	ctx := ctxT(t)
	for _, ttl := range []time.Duration{time.Millisecond, 2500 * time.Millisecond} {
		lk, err := l.Acquire(ctx, randomKey(t), ttl)
		if err != nil {
			t.Fatal(err)
		}
		got := lk.TTL()
		if got < ttl || got%time.Second != 0 {
			t.Errorf("TTL(%v) = %v, want whole seconds ≥ asked", ttl, got)
		}
		t.Logf("asked %v, granted %v", ttl, got)
		if err := lk.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func TestToken_IsCreateRevisionAndIncreases(t *testing.T) {
	c := newClient(t, testenv.Etcd, nil)
	l := newLocker(t, c)
	ctx := ctxT(t)
	key := randomKey(t)
	var last uint64
	for i := 0; i < 3; i++ {
		lk, err := l.Acquire(ctx, key, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if lk.Token() <= last {
			t.Fatalf("token %d after %d", lk.Token(), last)
		}
		last = lk.Token()
		resp, err := c.Get(ctx, etcdlock.DefaultKeyPrefix+key)
		if err != nil {
			t.Fatal(err)
		}
		if got := uint64(resp.Kvs[0].CreateRevision); got != lk.Token() {
			t.Fatalf("create revision %d, token %d", got, lk.Token())
		}
		// A new TTL moves the key to another lease: the token stays.
		if err := lk.Refresh(ctx, 7*time.Second); err != nil {
			t.Fatal(err)
		}
		resp, err = c.Get(ctx, etcdlock.DefaultKeyPrefix+key)
		if err != nil {
			t.Fatal(err)
		}
		if got := uint64(resp.Kvs[0].CreateRevision); got != lk.Token() {
			t.Fatalf("after refresh: create revision %d, token %d", got, lk.Token())
		}
		if err := lk.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func TestKeys_AreBinarySafe(t *testing.T) {
	c := newClient(t, testenv.Etcd, nil)
	l := newLocker(t, c)
	ctx := ctxT(t)
	base := randomKey(t)
	keys := []string{
		base + "\x00nul",
		base + "\xff\xfe invalid utf-8",
		base + strings.Repeat("k", lock.MaxKeyLength-len(base)),
	}
	held := make([]lock.Lock, 0, len(keys))
	for _, k := range keys {
		lk, err := l.Acquire(ctx, k, 5*time.Second)
		if err != nil {
			t.Fatalf("acquire %q: %v", k, err)
		}
		held = append(held, lk)
	}
	// The NUL key is not a prefix match of anything else: each is separate.
	if _, err := l.Acquire(ctx, base+"\x00nul", 5*time.Second); !errors.Is(err, lock.ErrLockNotAcquired) {
		t.Fatalf("second acquire of NUL key: %v", err)
	}
	if _, err := l.Acquire(ctx, base+"\x00", 5*time.Second); err != nil {
		t.Fatalf("acquire of a prefix of the NUL key: %v", err)
	}
	for _, lk := range held {
		if err := lk.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRefresh_NewTTLMovesTheKeyToANewLease(t *testing.T) {
	c := newClient(t, testenv.Etcd, nil)
	l := newLocker(t, c)
	ctx := ctxT(t)
	key := randomKey(t)
	lk, err := l.Acquire(ctx, key, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	before, err := c.Get(ctx, etcdlock.DefaultKeyPrefix+key)
	if err != nil {
		t.Fatal(err)
	}
	oldLease := clientv3.LeaseID(before.Kvs[0].Lease)
	refreshed := time.Now()
	if err := lk.Refresh(ctx, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	if lk.TTL() != 3*time.Second {
		t.Fatalf("TTL after refresh = %v, want 3s", lk.TTL())
	}
	after, err := c.Get(ctx, etcdlock.DefaultKeyPrefix+key)
	if err != nil {
		t.Fatal(err)
	}
	newLease := clientv3.LeaseID(after.Kvs[0].Lease)
	if newLease == oldLease {
		t.Fatal("key still on the old lease")
	}
	ttl, err := c.TimeToLive(ctx, newLease)
	if err != nil {
		t.Fatal(err)
	}
	if ttl.GrantedTTL != 3 {
		t.Fatalf("new lease granted %ds, want 3", ttl.GrantedTTL)
	}
	eventually(t, 10*time.Second, "old lease revoked when idle", func() bool {
		r, err := c.TimeToLive(ctx, oldLease)
		return err == nil && r.TTL == -1
	})
	// Unrefreshed, the lock frees itself after the new, shorter TTL.
	eventually(t, 10*time.Second, "lock freed by its lease", func() bool {
		r, err := c.Get(ctx, etcdlock.DefaultKeyPrefix+key)
		return err == nil && len(r.Kvs) == 0
	})
	freed := time.Since(refreshed)
	t.Logf("freed %v after the refresh (TTL 3s)", freed.Round(10*time.Millisecond))
	if freed < 3*time.Second {
		t.Errorf("freed %v after a refresh to 3s", freed)
	}
	if err := lk.Release(ctx); !errors.Is(err, lock.ErrLockNotHeld) {
		t.Fatalf("release after expiry: %v, want ErrLockNotHeld", err)
	}
}

// TestAcquire_AmbiguousTxnLeavesNoLeaseAndNoLock makes the acquire
// transaction fail after etcd applied it: the Locker must not be left
// holding a lock nobody has a handle for, and the lease must go.
func TestAcquire_AmbiguousTxnLeavesNoLeaseAndNoLock(t *testing.T) {
	counter := newRPCCounter()
	c := newClient(t, testenv.Etcd, counter)
	l := newLocker(t, c)
	ctx := ctxT(t)
	key := randomKey(t)
	boom := errors.New("reply lost")
	counter.failNextAfter("Txn", boom)
	if _, err := l.Acquire(ctx, key, 30*time.Second); !errors.Is(err, boom) {
		t.Fatalf("acquire: %v, want the injected error", err)
	}
	leases := counter.grantedLeases()
	if len(leases) != 1 {
		t.Fatalf("leases granted: %v", leases)
	}
	eventually(t, 5*time.Second, "key deleted and lease revoked", func() bool {
		r, err := c.Get(ctx, etcdlock.DefaultKeyPrefix+key)
		if err != nil || len(r.Kvs) != 0 {
			return false
		}
		tl, err := c.TimeToLive(ctx, clientv3.LeaseID(leases[0]))
		return err == nil && tl.TTL == -1
	})
	lk, err := l.Acquire(ctx, key, 5*time.Second)
	if err != nil {
		t.Fatalf("acquire after the clean-up: %v", err)
	}
	_ = lk.Release(ctx)
}

// TestAcquire_AmbiguousGrantLeavesNoLease makes the lease grant fail after
// etcd applied it: the lease, whose ID we chose, must still be revoked.
func TestAcquire_AmbiguousGrantLeavesNoLease(t *testing.T) {
	counter := newRPCCounter()
	c := newClient(t, testenv.Etcd, counter)
	l := newLocker(t, c)
	ctx := ctxT(t)
	boom := errors.New("reply lost")
	counter.failNextAfter("LeaseGrant", boom)
	if _, err := l.Acquire(ctx, randomKey(t), 30*time.Second); !errors.Is(err, boom) {
		t.Fatalf("acquire: %v, want the injected error", err)
	}
	leases := counter.grantedLeases()
	if len(leases) != 1 {
		t.Fatalf("leases granted: %v", leases)
	}
	eventually(t, 5*time.Second, "lease revoked", func() bool {
		tl, err := c.TimeToLive(ctx, clientv3.LeaseID(leases[0]))
		return err == nil && tl.TTL == -1
	})
}

func TestAcquire_RefusedAttemptsLeaseIsRevokedWhenIdle(t *testing.T) {
	counter := newRPCCounter()
	c := newClient(t, testenv.Etcd, counter)
	l := newLocker(t, c)
	ctx := ctxT(t)
	key := randomKey(t)
	lk, err := l.Acquire(ctx, key, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Release(ctx)
	if _, err := l.Acquire(ctx, key, 30*time.Second); !errors.Is(err, lock.ErrLockNotAcquired) {
		t.Fatalf("second acquire: %v", err)
	}
	// The refused attempt's lease is kept for the next attempt, and
	// revoked once it has been idle a while.
	leases := counter.grantedLeases()
	eventually(t, 10*time.Second, "refused attempt's lease revoked", func() bool {
		tl, err := c.TimeToLive(ctx, clientv3.LeaseID(leases[1]))
		return err == nil && tl.TTL == -1
	})
}

// TestOtherBackend_ReleasesAndRefreshesByReadingTheKey drives a lock taken
// by one backend from another (another process): the lease is found
// through the key.
func TestOtherBackend_ReleasesAndRefreshesByReadingTheKey(t *testing.T) {
	c := newClient(t, testenv.Etcd, nil)
	a, b := newBackend(t, c), newBackend(t, c)
	ctx := ctxT(t)
	key := randomKey(t)
	const owner = "0123456789abcdef0123456789abcdef"
	g, ok, err := a.TryAcquire(ctx, key, owner, 5*time.Second)
	if err != nil || !ok {
		t.Fatalf("acquire: %v %v", ok, err)
	}
	if ok, err := b.Release(ctx, key, "ffffffffffffffffffffffffffffffff"); err != nil || ok {
		t.Fatalf("release by a stranger: ok=%v err=%v", ok, err)
	}
	if got, ok, err := b.Refresh(ctx, key, owner, 8*time.Second); err != nil || !ok || got != 8*time.Second {
		t.Fatalf("refresh from b: %v %v %v", got, ok, err)
	}
	h, ok, err := b.(driver.Inspector).Inspect(ctx, key)
	if err != nil || !ok || h.Owner != owner || h.Token != g.Token || h.TTL < 7*time.Second {
		t.Fatalf("inspect: %+v %v %v (token %d)", h, ok, err, g.Token)
	}
	if ok, err := b.Release(ctx, key, owner); err != nil || !ok {
		t.Fatalf("release from b: %v %v", ok, err)
	}
	// a's cached lease is gone with the key.
	if ok, err := a.Release(ctx, key, owner); err != nil || ok {
		t.Fatalf("release from a after b: ok=%v err=%v", ok, err)
	}
	if _, ok, err := b.(driver.Inspector).Inspect(ctx, key); err != nil || ok {
		t.Fatalf("inspect of a free key: ok=%v err=%v", ok, err)
	}
}

func TestNotifyLoss(t *testing.T) {
	c := newClient(t, testenv.Etcd, nil)
	ctx := ctxT(t)
	for _, tc := range []struct {
		name string
		lose func(t *testing.T, k string)
	}{
		{"deleted", func(t *testing.T, k string) {
			if _, err := c.Delete(ctx, k); err != nil {
				t.Fatal(err)
			}
		}},
		{"overwritten", func(t *testing.T, k string) {
			if _, err := c.Put(ctx, k, "someone else"); err != nil {
				t.Fatal(err)
			}
		}},
		{"lease expired", func(t *testing.T, k string) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLocker(t, c)
			key := randomKey(t)
			lk, err := l.Acquire(ctx, key, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			wctx, cancel := context.WithCancel(ctx)
			defer cancel()
			lost := lk.(lock.LossNotifier).NotifyLoss(wctx)
			if lost == nil {
				t.Fatal("NotifyLoss returned nil")
			}
			// A refresh by the holder itself is not a loss.
			if err := lk.Refresh(ctx, time.Second); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			tc.lose(t, etcdlock.DefaultKeyPrefix+key)
			select {
			case <-lost:
				t.Logf("loss pushed after %v (TTL %v)", time.Since(start).Round(time.Millisecond), lk.TTL())
			case <-time.After(lk.TTL() + 5*time.Second):
				t.Fatal("no loss pushed")
			}
			_, _ = c.Delete(ctx, etcdlock.DefaultKeyPrefix+key)
		})
	}
}

func TestNotifyLoss_StopsWithCtx(t *testing.T) {
	c := newClient(t, testenv.Etcd, nil)
	l, err := etcdlock.New(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	lk, err := l.Acquire(ctx, randomKey(t), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	if lk.(lock.LossNotifier).NotifyLoss(wctx) == nil {
		t.Fatal("NotifyLoss returned nil")
	}
	cancel()
	eventually(t, 10*time.Second, "the watcher stopped with its context", func() bool {
		buf := make([]byte, 1<<20)
		return !strings.Contains(string(buf[:runtime.Stack(buf, true)]), "etcdlock.(*backend).watchLoss")
	})
	if err := lk.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestWaitFree(t *testing.T) {
	c := newClient(t, testenv.Etcd, nil)
	b := newBackend(t, c)
	w := b.(driver.Waiter)
	ctx := ctxT(t)
	key := randomKey(t)
	if err := w.WaitFree(ctx, key); err != nil {
		t.Fatalf("wait on a free key: %v", err)
	}
	const owner = "0123456789abcdef0123456789abcdef"
	if _, ok, err := b.TryAcquire(ctx, key, owner, 30*time.Second); err != nil || !ok {
		t.Fatalf("acquire: %v %v", ok, err)
	}
	done := make(chan error, 1)
	go func() { done <- w.WaitFree(ctx, key) }()
	// Refreshing (a put with the same owner) does not wake the waiter;
	// releasing does.
	if _, ok, err := b.Refresh(ctx, key, owner, 20*time.Second); err != nil || !ok {
		t.Fatalf("refresh: %v %v", ok, err)
	}
	select {
	case err := <-done:
		t.Fatalf("WaitFree returned while held: %v", err)
	default:
	}
	if ok, err := b.Release(ctx, key, owner); err != nil || !ok {
		t.Fatalf("release: %v %v", ok, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("WaitFree: %v", err)
	}

	if _, ok, err := b.TryAcquire(ctx, key, owner, 30*time.Second); err != nil || !ok {
		t.Fatalf("acquire: %v %v", ok, err)
	}
	defer b.Release(ctx, key, owner)
	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := w.WaitFree(cctx, key); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitFree past its deadline: %v", err)
	}
}

func TestKeyPrefix(t *testing.T) {
	c := newClient(t, testenv.Etcd, nil)
	ctx := ctxT(t)
	prefix := "/dlock-test-prefix/" + randomKey(t) + "/"
	l, err := etcdlock.New(c, &etcdlock.Options{KeyPrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	lk, err := l.Acquire(ctx, "k", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.Get(ctx, prefix+"k")
	if err != nil || len(r.Kvs) != 1 {
		t.Fatalf("key under prefix: %v %v", r, err)
	}
	if err := lk.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestPing(t *testing.T) {
	c := newClient(t, testenv.Etcd, nil)
	l := newLocker(t, c)
	if err := l.Ping(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

// TestHold_LossIsPushed checks that lock.Hold's context ends as soon as
// the key is deleted behind the holder's back, long before the next
// refresh would notice.
func TestHold_LossIsPushed(t *testing.T) {
	c := newClient(t, testenv.Etcd, nil)
	l := newLocker(t, c)
	ctx := ctxT(t)
	key := randomKey(t)
	lk, err := l.Acquire(ctx, key, 30*time.Second) // next refresh in 10s
	if err != nil {
		t.Fatal(err)
	}
	held, stop := lock.Hold(ctx, lk, nil)
	defer stop()
	// Deleting before the watch is in place is seen too: the watcher
	// reads the key first.
	if _, err := c.Delete(ctx, etcdlock.DefaultKeyPrefix+key); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	select {
	case <-held.Done():
		if !errors.Is(context.Cause(held), lock.ErrLockNotHeld) {
			t.Errorf("cause %v, want ErrLockNotHeld", context.Cause(held))
		}
		t.Logf("Hold's context ended %v after the delete: %v", time.Since(start).Round(time.Millisecond), context.Cause(held))
	case <-time.After(5 * time.Second):
		t.Fatal("Hold's context still live 5s after the key was deleted")
	}
}
