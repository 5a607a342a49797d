package memlock_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dlockgo/dlock/backends/memlock"
	"github.com/dlockgo/dlock/internal/leakcheck"
	"github.com/dlockgo/dlock/lock"
	"github.com/dlockgo/dlock/lock/driver"
	"github.com/dlockgo/dlock/lock/locktest"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

func newStore(t testing.TB) *memlock.Store {
	t.Helper()
	s, err := memlock.NewStore(nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	s := newStore(t)
	locktest.Run(t, func(*testing.T) driver.Backend { return s.Backend() }, locktest.Options{})
}

func TestConformance_OneShard(t *testing.T) {
	s, err := memlock.NewStore(&memlock.Options{Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	locktest.Run(t, func(*testing.T) driver.Backend { return s.Backend() }, locktest.Options{FencingRounds: 100})
}

func TestNewStore_RejectsNegativeShards(t *testing.T) {
	if _, err := memlock.NewStore(&memlock.Options{Shards: -1}); err == nil {
		t.Error("NewStore with -1 shards succeeded")
	}
}

func TestNew_IdentityIsStoredWithTheLock(t *testing.T) {
	s := newStore(t)
	l, err := s.NewLocker(&lock.Options{Identity: "host-a/42"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	lk, err := l.Acquire(context.Background(), "k", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	h, ok, err := s.Backend().Inspect(context.Background(), "k")
	if err != nil || !ok {
		t.Fatalf("Inspect: ok=%v err=%v", ok, err)
	}
	if got := lock.OwnerIdentity(h.Owner); got != "host-a/42" {
		t.Errorf("identity = %q, want %q", got, "host-a/42")
	}
	if h.Token != lk.Token() {
		t.Errorf("token = %d, want %d", h.Token, lk.Token())
	}
}

// The tests below run in a synctest bubble: time is fake and advances only
// when every goroutine in the bubble is blocked, so TTLs of hours take no
// real time and are exact.

func TestExpiry_IsExactOnTheMonotonicClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newStore(t)
		b := s.Backend()
		ctx := context.Background()
		if _, ok, _ := b.TryAcquire(ctx, "k", "a", time.Hour); !ok {
			t.Fatal("first acquire refused")
		}
		time.Sleep(time.Hour - time.Nanosecond)
		if _, ok, _ := b.TryAcquire(ctx, "k", "b", time.Hour); ok {
			t.Fatal("acquired 1ns before the holder's TTL ran out")
		}
		time.Sleep(time.Nanosecond)
		if _, ok, _ := b.TryAcquire(ctx, "k", "b", time.Hour); !ok {
			t.Fatal("refused at the holder's expiry")
		}
	})
}

func TestRefresh_MovesTheExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newStore(t).Backend()
		ctx := context.Background()
		b.TryAcquire(ctx, "k", "a", time.Minute)
		time.Sleep(50 * time.Second)
		if _, ok, _ := b.Refresh(ctx, "k", "a", time.Minute); !ok {
			t.Fatal("refresh of a live lock refused")
		}
		time.Sleep(59 * time.Second)
		if _, ok, _ := b.TryAcquire(ctx, "k", "b", time.Minute); ok {
			t.Fatal("acquired before the refreshed TTL ran out")
		}
		time.Sleep(time.Second)
		if _, ok, _ := b.Refresh(ctx, "k", "a", time.Minute); ok {
			t.Fatal("refresh after expiry succeeded")
		}
	})
}

func TestSweep_RemovesExpiredEntriesWithoutTimers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := memlock.NewStore(&memlock.Options{Shards: 1})
		if err != nil {
			t.Fatal(err)
		}
		b := s.Backend()
		ctx := context.Background()
		const n = 1000
		for i := range n {
			b.TryAcquire(ctx, "old"+strconv.Itoa(i), "a", time.Second)
		}
		time.Sleep(2 * time.Second)
		// Each new acquisition probes two entries; n of them clear most of
		// the expired ones. What is left must be live or unprobed.
		for i := range n {
			k := "new" + strconv.Itoa(i)
			b.TryAcquire(ctx, k, "a", time.Hour)
			b.Release(ctx, k, "a")
		}
		left := 0
		for i := range n {
			if _, ok, _ := b.Inspect(ctx, "old"+strconv.Itoa(i)); ok {
				left++
			}
		}
		if left != 0 {
			t.Errorf("%d expired entries still visible", left)
		}
		if got := memlock.Len(s); got > n/4 {
			t.Errorf("%d entries left in the map after %d sweeping acquisitions, want most of %d expired ones gone", got, n, n)
		}
	})
}

func TestWaitFree_WakesOnReleaseAndOnExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newStore(t).Backend()
		ctx := context.Background()
		b.TryAcquire(ctx, "k", "a", time.Hour)
		var woke atomic.Bool
		go func() {
			b.WaitFree(ctx, "k")
			woke.Store(true)
		}()
		synctest.Wait()
		if woke.Load() {
			t.Fatal("woke while the key was held")
		}
		b.Release(ctx, "k", "a")
		synctest.Wait()
		if !woke.Load() {
			t.Fatal("not woken by the release")
		}

		b.TryAcquire(ctx, "k", "b", time.Minute)
		start := time.Now()
		if err := b.WaitFree(ctx, "k"); err != nil {
			t.Fatal(err)
		}
		if waited := time.Since(start); waited != time.Minute {
			t.Errorf("woke after %v, want at the holder's expiry (1m)", waited)
		}
	})
}

func TestWaitFree_EndsWithTheContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newStore(t).Backend()
		b.TryAcquire(context.Background(), "k", "a", time.Hour)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := b.WaitFree(ctx, "k"); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("WaitFree = %v, want context.DeadlineExceeded", err)
		}
	})
}

func TestClosedBackend_FailsWithAnErrorNotContention(t *testing.T) {
	s := newStore(t)
	b := s.Backend()
	b.Close()
	if _, ok, err := b.TryAcquire(context.Background(), "k", "a", time.Second); ok || err == nil {
		t.Errorf("TryAcquire on a closed backend: ok=%v err=%v, want an error", ok, err)
	}
	// The Store itself is still usable through another Backend.
	if _, ok, err := s.Backend().TryAcquire(context.Background(), "k", "a", time.Second); !ok || err != nil {
		t.Errorf("TryAcquire through a second backend: ok=%v err=%v", ok, err)
	}
}

// FuzzKey feeds arbitrary keys through validation and the memlock key path:
// no panic; invalid keys get typed errors; valid keys lock, exclude and
// release exactly.
func FuzzKey(f *testing.F) {
	for _, k := range []string{"", "a", "\x00", "\xff\x00", "{tag}", "🔒", string(make([]byte, lock.MaxKeyLength)), string(make([]byte, lock.MaxKeyLength+1))} {
		f.Add(k)
	}
	s, err := memlock.NewStore(nil)
	if err != nil {
		f.Fatal(err)
	}
	a, _ := s.NewLocker(nil)
	b, _ := s.NewLocker(nil)
	f.Cleanup(func() { a.Close(); b.Close() })
	f.Fuzz(func(t *testing.T, key string) {
		ctx := context.Background()
		lk, err := a.Acquire(ctx, key, time.Minute)
		switch {
		case key == "":
			if !errors.Is(err, lock.ErrEmptyKey) {
				t.Fatalf("empty key: %v", err)
			}
			return
		case len(key) > lock.MaxKeyLength:
			if !errors.Is(err, lock.ErrKeyTooLong) {
				t.Fatalf("%d-byte key: %v", len(key), err)
			}
			return
		case err != nil:
			t.Fatalf("valid key %q: %v", key, err)
		}
		if lk.Key() != key {
			t.Fatalf("Key() = %q, want %q", lk.Key(), key)
		}
		if _, err := b.Acquire(ctx, key, time.Minute); !errors.Is(err, lock.ErrLockNotAcquired) {
			t.Fatalf("second holder of %q: %v", key, err)
		}
		// A key one byte longer is a different key: free (or too long).
		switch nb, err := b.Acquire(ctx, key+"\x00", time.Minute); {
		case err == nil:
			nb.Release(ctx)
		case !errors.Is(err, lock.ErrKeyTooLong):
			t.Fatalf("neighbour key of %q: %v", key, err)
		}
		if err := lk.Release(ctx); err != nil {
			t.Fatalf("Release: %v", err)
		}
		if err := lk.Release(ctx); !errors.Is(err, lock.ErrLockNotHeld) {
			t.Fatalf("second Release: %v", err)
		}
	})
}

func BenchmarkAcquireRelease(b *testing.B) {
	l, err := memlock.New(nil)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		lk, err := l.Acquire(ctx, "bench", time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		if err := lk.Release(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAcquireRelease_ParallelDistinctKeys(b *testing.B) {
	l, err := memlock.New(nil)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	var ids atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(max(1, 8/runtime.GOMAXPROCS(0))) // 8 goroutines in all
	b.RunParallel(func(pb *testing.PB) {
		key := fmt.Sprintf("bench-%d", ids.Add(1))
		for pb.Next() {
			lk, err := l.Acquire(ctx, key, time.Minute)
			if err != nil {
				b.Error(err)
				return
			}
			if err := lk.Release(ctx); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
