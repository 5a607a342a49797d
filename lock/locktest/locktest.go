// Package locktest is the conformance suite that every dlock store passes,
// plus tools for testing code built on locks: a [Checker] of critical
// sections and a fault-injecting [Faulty] backend.
//
// A store's conformance test is a few lines:
//
//	func TestConformance(t *testing.T) {
//		locktest.Run(t, func(t *testing.T) driver.Backend {
//			b, err := mystore.NewBackend(client, nil)
//			if err != nil {
//				t.Fatal(err)
//			}
//			return b
//		}, locktest.Options{})
//	}
//
// The suite drives the store through the Locker that [lock.New] builds, as
// users do, and also calls the driver contract directly where a property
// cannot be seen from above.
package locktest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dlockgo/dlock/lock"
	"github.com/dlockgo/dlock/lock/driver"
)

// Options declare what a store can do, so that the suite tests what it
// promises and nothing else.
type Options struct {
	// AdvisoryTTL declares that the store does not free a lock when its TTL
	// runs out (the TTL only drives the holder's keepalive). The tests of
	// expiry are then skipped.
	AdvisoryTTL bool
	// MinTTL is the shortest TTL the store honours; shorter ones are
	// rounded up. The expiry tests use TTLs of at least this. Default 1ms.
	MinTTL time.Duration
	// Granularity declares that granted TTLs are rounded up to a multiple
	// of it. Default: exact.
	Granularity time.Duration
	// FencingRounds is the number of acquire/release cycles in the fencing
	// test. Default 1,000.
	FencingRounds int
}

// shortTTL is the TTL the suite uses to see locks expire.
func (o Options) shortTTL() time.Duration {
	d := 150 * time.Millisecond
	if o.MinTTL > d {
		d = o.MinTTL
	}
	return o.roundUp(d)
}

func (o Options) roundUp(d time.Duration) time.Duration {
	if g := o.Granularity; g > 0 && d%g != 0 {
		d += g - d%g
	}
	return d
}

// longTTL is long enough never to run out during a test.
const longTTL = time.Minute

// Run runs the conformance suite against the store that newBackend opens.
// Each call of newBackend must return a new, independent Backend — as if
// opened by another process — on the same store and namespace; the suite
// closes it. Subtests use random keys, so the store need not be empty.
func Run(t *testing.T, newBackend func(t *testing.T) driver.Backend, opts Options) {
	if opts.FencingRounds == 0 {
		opts.FencingRounds = 1000
	}
	s := &suite{newBackend: newBackend, opts: opts}
	t.Run("Acquire", s.testAcquire)
	t.Run("Release", s.testRelease)
	t.Run("Refresh", s.testRefresh)
	t.Run("Expiry", s.testExpiry)
	t.Run("Fencing", s.testFencing)
	t.Run("Keys", s.testKeys)
	t.Run("Context", s.testContext)
	t.Run("Close", s.testClose)
	t.Run("Driver", s.testDriver)
	t.Run("Hold", s.testHold)
	t.Run("Stress", s.testStress)
}

type suite struct {
	newBackend func(t *testing.T) driver.Backend
	opts       Options
}

// locker returns a new Locker on a new Backend, closed when t ends.
func (s *suite) locker(t *testing.T) lock.Locker {
	t.Helper()
	b := s.newBackend(t)
	l, err := lock.New(b, nil)
	if err != nil {
		t.Fatalf("lock.New: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil && !errors.Is(err, lock.ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return l
}

// backend returns a new Backend, closed when t ends.
func (s *suite) backend(t *testing.T) driver.Backend {
	t.Helper()
	b := s.newBackend(t)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// Key returns a key no other test uses: "locktest/" + the test's name + a
// random suffix.
func Key(t testing.TB) string {
	var b [6]byte
	rand.Read(b[:])
	return "locktest/" + t.Name() + "/" + hex.EncodeToString(b[:])
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustAcquire(t *testing.T, l lock.Locker, key string, ttl time.Duration) lock.Lock {
	t.Helper()
	lk, err := l.Acquire(ctxFor(t), key, ttl)
	if err != nil {
		t.Fatalf("Acquire(%s, %v): %v", lock.QuoteKey(key), ttl, err)
	}
	return lk
}

func mustRelease(t *testing.T, lk lock.Lock) {
	t.Helper()
	if err := lk.Release(ctxFor(t)); err != nil {
		t.Fatalf("Release(%s): %v", lock.QuoteKey(lk.Key()), err)
	}
}

// wantRefused checks that l cannot acquire key now.
func wantRefused(t *testing.T, l lock.Locker, key string) {
	t.Helper()
	lk, err := l.Acquire(ctxFor(t), key, longTTL)
	if err == nil {
		_ = lk.Release(ctxFor(t))
		t.Fatalf("Acquire(%s) succeeded while another holder has it", lock.QuoteKey(key))
	}
	if !errors.Is(err, lock.ErrLockNotAcquired) {
		t.Fatalf("Acquire(%s) of a held key: got %v, want an error wrapping lock.ErrLockNotAcquired", lock.QuoteKey(key), err)
	}
}

// wantFree checks that l can acquire key now, and releases it again.
func wantFree(t *testing.T, l lock.Locker, key string) {
	t.Helper()
	mustRelease(t, mustAcquire(t, l, key, longTTL))
}

// waitFree polls until l can acquire key, for at most within, and returns
// the lock it got.
func waitFree(t *testing.T, l lock.Locker, key string, ttl, within time.Duration) lock.Lock {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		lk, err := l.Acquire(ctxFor(t), key, ttl)
		if err == nil {
			return lk
		}
		if !errors.Is(err, lock.ErrLockNotAcquired) {
			t.Fatalf("Acquire(%s): %v", lock.QuoteKey(key), err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still held %v later", lock.QuoteKey(key), within)
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not synchronisation
	}
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: got %v, want an error wrapping %v", what, err, want)
	}
}

func (s *suite) testAcquire(t *testing.T) {
	t.Run("ThenRelease", func(t *testing.T) {
		l := s.locker(t)
		key := Key(t)
		lk := mustAcquire(t, l, key, longTTL)
		if lk.Key() != key {
			t.Errorf("Key() = %q, want %q", lk.Key(), key)
		}
		if lk.Token() == 0 {
			t.Error("Token() = 0, want a non-zero fencing token")
		}
		if lk.TTL() < longTTL {
			t.Errorf("TTL() = %v, want at least the %v asked for", lk.TTL(), longTTL)
		}
		mustRelease(t, lk)
		wantFree(t, l, key)
	})
	t.Run("SecondHolderIsRefused", func(t *testing.T) {
		a, b := s.locker(t), s.locker(t)
		key := Key(t)
		lk := mustAcquire(t, a, key, longTTL)
		wantRefused(t, b, key)
		mustRelease(t, lk)
		wantFree(t, b, key)
	})
	t.Run("SecondHolderInSameLockerIsRefused", func(t *testing.T) {
		l := s.locker(t)
		key := Key(t)
		lk := mustAcquire(t, l, key, longTTL)
		wantRefused(t, l, key)
		mustRelease(t, lk)
		wantFree(t, l, key)
	})
	t.Run("GoroutinesSharingALockerAreTwoHolders", func(t *testing.T) {
		l := s.locker(t)
		key := Key(t)
		const n = 8
		var wg sync.WaitGroup
		results := make(chan lock.Lock, n)
		errs := make(chan error, n)
		for range n {
			wg.Go(func() {
				lk, err := l.Acquire(ctxFor(t), key, longTTL)
				if err != nil {
					errs <- err
					return
				}
				results <- lk
			})
		}
		wg.Wait()
		close(results)
		close(errs)
		if got := len(results); got != 1 {
			t.Errorf("%d of %d concurrent Acquires on one Locker succeeded, want exactly 1", got, n)
		}
		for err := range errs {
			wantErr(t, "concurrent Acquire", err, lock.ErrLockNotAcquired)
		}
		for lk := range results {
			mustRelease(t, lk)
		}
	})
	t.Run("KeysAreIsolated", func(t *testing.T) {
		a, b := s.locker(t), s.locker(t)
		base := Key(t)
		lk := mustAcquire(t, a, base, longTTL)
		for _, other := range []string{base + "x", base[:len(base)-1], base + "\x00", strings.ToUpper(base), base + "/"} {
			wantFree(t, b, other)
		}
		mustRelease(t, lk)
	})
}

func (s *suite) testRelease(t *testing.T) {
	t.Run("Twice", func(t *testing.T) {
		l := s.locker(t)
		lk := mustAcquire(t, l, Key(t), longTTL)
		mustRelease(t, lk)
		wantErr(t, "second Release", lk.Release(ctxFor(t)), lock.ErrLockNotHeld)
	})
	t.Run("ByStaleHandleAfterNewHolder", func(t *testing.T) {
		a, b, c := s.locker(t), s.locker(t), s.locker(t)
		key := Key(t)
		old := mustAcquire(t, a, key, longTTL)
		mustRelease(t, old)
		cur := mustAcquire(t, b, key, longTTL)
		wantErr(t, "Release by the stale handle", old.Release(ctxFor(t)), lock.ErrLockNotHeld)
		wantErr(t, "Refresh by the stale handle", old.Refresh(ctxFor(t), longTTL), lock.ErrLockNotHeld)
		wantRefused(t, c, key)
		mustRelease(t, cur)
	})
	t.Run("ConcurrentReleasesSucceedOnce", func(t *testing.T) {
		l := s.locker(t)
		lk := mustAcquire(t, l, Key(t), longTTL)
		const n = 4
		errs := make(chan error, n)
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() { errs <- lk.Release(ctxFor(t)) })
		}
		wg.Wait()
		close(errs)
		ok := 0
		for err := range errs {
			if err == nil {
				ok++
			} else {
				wantErr(t, "concurrent Release", err, lock.ErrLockNotHeld)
			}
		}
		if ok != 1 {
			t.Errorf("%d concurrent Releases succeeded, want 1", ok)
		}
	})
}

func (s *suite) testRefresh(t *testing.T) {
	t.Run("KeepsTheLock", func(t *testing.T) {
		a, b := s.locker(t), s.locker(t)
		key := Key(t)
		lk := mustAcquire(t, a, key, longTTL)
		if err := lk.Refresh(ctxFor(t), 2*longTTL); err != nil {
			t.Fatalf("Refresh: %v", err)
		}
		if lk.TTL() < 2*longTTL {
			t.Errorf("TTL() after Refresh = %v, want at least %v", lk.TTL(), 2*longTTL)
		}
		wantRefused(t, b, key)
		mustRelease(t, lk)
	})
	t.Run("ExtendsTheTTL", func(t *testing.T) {
		if s.opts.AdvisoryTTL {
			t.Skip("the store declares its TTL advisory")
		}
		a, b := s.locker(t), s.locker(t)
		key := Key(t)
		ttl := s.opts.shortTTL()
		start := time.Now()
		lk := mustAcquire(t, a, key, ttl)
		if err := lk.Refresh(ctxFor(t), longTTL); err != nil {
			t.Fatalf("Refresh: %v", err)
		}
		// Poll past the first TTL: the refreshed lock must still hold.
		for time.Since(start) < ttl+ttl/2+s.opts.Granularity {
			wantRefused(t, b, key)
			time.Sleep(ttl / 5)
		}
		mustRelease(t, lk)
	})
	t.Run("AfterReleaseIsNotHeld", func(t *testing.T) {
		l := s.locker(t)
		lk := mustAcquire(t, l, Key(t), longTTL)
		mustRelease(t, lk)
		wantErr(t, "Refresh after Release", lk.Refresh(ctxFor(t), longTTL), lock.ErrLockNotHeld)
	})
	t.Run("InvalidTTL", func(t *testing.T) {
		l := s.locker(t)
		lk := mustAcquire(t, l, Key(t), longTTL)
		for _, ttl := range []time.Duration{0, -time.Second} {
			wantErr(t, fmt.Sprintf("Refresh(%v)", ttl), lk.Refresh(ctxFor(t), ttl), lock.ErrInvalidTTL)
		}
		mustRelease(t, lk)
	})
}

func (s *suite) testExpiry(t *testing.T) {
	if s.opts.AdvisoryTTL {
		t.Skip("the store declares its TTL advisory")
	}
	ttl := s.opts.shortTTL()
	// A lock must be free shortly after its TTL; the slack covers the
	// store's expiry precision and the round trips of polling.
	within := ttl + s.opts.Granularity + 2*time.Second
	t.Run("FreesTheKey", func(t *testing.T) {
		a, b := s.locker(t), s.locker(t)
		key := Key(t)
		start := time.Now()
		old := mustAcquire(t, a, key, ttl)
		cur := waitFree(t, b, key, longTTL, within)
		if waited := time.Since(start); waited < ttl {
			t.Errorf("the key was free after %v, before its TTL of %v", waited, ttl)
		}
		_ = old
		mustRelease(t, cur)
	})
	t.Run("RefreshAfterExpiryIsNotHeld", func(t *testing.T) {
		a, b := s.locker(t), s.locker(t)
		key := Key(t)
		old := mustAcquire(t, a, key, ttl)
		mustRelease(t, waitFree(t, b, key, longTTL, within))
		wantErr(t, "Refresh after expiry", old.Refresh(ctxFor(t), longTTL), lock.ErrLockNotHeld)
	})
	t.Run("OldHandleCannotTouchNewHolder", func(t *testing.T) {
		a, b, c := s.locker(t), s.locker(t), s.locker(t)
		key := Key(t)
		old := mustAcquire(t, a, key, ttl)
		cur := waitFree(t, b, key, longTTL, within)
		if cur.Token() <= old.Token() {
			t.Errorf("new holder's token %d is not larger than the expired holder's %d", cur.Token(), old.Token())
		}
		wantErr(t, "Refresh by the expired handle", old.Refresh(ctxFor(t), longTTL), lock.ErrLockNotHeld)
		wantErr(t, "Release by the expired handle", old.Release(ctxFor(t)), lock.ErrLockNotHeld)
		wantRefused(t, c, key)
		mustRelease(t, cur)
	})
	t.Run("GrantedTTLIsRoundedUp", func(t *testing.T) {
		l := s.locker(t)
		// Never a multiple of a coarser unit, and long enough for the
		// answer to come back within it (a grant that arrives after its
		// TTL is refused).
		ask := s.opts.shortTTL() + 1
		lk, err := l.Acquire(ctxFor(t), Key(t), ask)
		if err != nil {
			t.Fatalf("Acquire with TTL %v: %v", ask, err)
		}
		if lk.TTL() < ask {
			t.Errorf("TTL() = %v, less than the %v asked for", lk.TTL(), ask)
		}
		_ = lk.Release(ctxFor(t)) // may have expired already
	})
}

func (s *suite) testFencing(t *testing.T) {
	t.Run("TokensIncreaseAcrossHolders", func(t *testing.T) {
		lockers := []lock.Locker{s.locker(t), s.locker(t)}
		key := Key(t)
		var last uint64
		for i := range s.opts.FencingRounds {
			lk := mustAcquire(t, lockers[i%2], key, longTTL)
			if tok := lk.Token(); tok <= last {
				t.Fatalf("round %d: token %d is not larger than the previous %d", i, tok, last)
			}
			last = lk.Token()
			mustRelease(t, lk)
		}
	})
	t.Run("TokensIncreasePerKeyWhenKeysInterleave", func(t *testing.T) {
		l := s.locker(t)
		keys := []string{Key(t), Key(t), Key(t)}
		last := make(map[string]uint64)
		for i := range 60 {
			key := keys[(i*7)%len(keys)]
			lk := mustAcquire(t, l, key, longTTL)
			if lk.Token() <= last[key] {
				t.Fatalf("round %d, key %s: token %d is not larger than %d", i, key, lk.Token(), last[key])
			}
			last[key] = lk.Token()
			mustRelease(t, lk)
		}
	})
	t.Run("HoldingOneKeyDoesNotBlockAnother", func(t *testing.T) {
		a, b := s.locker(t), s.locker(t)
		k1, k2 := Key(t), Key(t)
		l1 := mustAcquire(t, a, k1, longTTL)
		l2 := mustAcquire(t, b, k2, longTTL)
		if l1.Token() == 0 || l2.Token() == 0 {
			t.Error("zero token")
		}
		mustRelease(t, l1)
		mustRelease(t, l2)
	})
}

func (s *suite) testKeys(t *testing.T) {
	valid := []struct{ name, key string }{
		{"Unicode", "🔒 schlüssel/ключ/鍵"},
		{"Binary", "\x00\xff"},
		{"InvalidUTF8", "\xc3\x28\xa0\xa1"},
		{"OnlyNUL", "\x00"},
		{"HashTagCharacters", "{a}}{b{"},
		{"GlobCharacters", "*?[]%_\\"},
		{"Spaces", " a b \t\n"},
		{"MaxLength", strings.Repeat("k", lock.MaxKeyLength)},
		{"MaxLengthBinary", strings.Repeat("\xff\x00", lock.MaxKeyLength/2)},
	}
	for _, tc := range valid {
		t.Run(tc.name, func(t *testing.T) {
			a, b := s.locker(t), s.locker(t)
			// The suffix keeps concurrent runs of the suite apart; the
			// key's own shape comes first so that it is what the store
			// has to encode.
			key := tc.key
			suffix := Key(t)
			suffix = "/" + suffix[len(suffix)-12:]
			if len(key)+len(suffix) > lock.MaxKeyLength {
				key = key[:lock.MaxKeyLength-len(suffix)]
			}
			key += suffix
			lk := mustAcquire(t, a, key, longTTL)
			if lk.Key() != key {
				t.Errorf("Key() = %q, want %q", lk.Key(), key)
			}
			wantRefused(t, b, key)
			mustRelease(t, lk)
			mustRelease(t, mustAcquire(t, b, key, longTTL))
		})
	}
	invalid := []struct {
		name string
		key  string
		want error
	}{
		{"Empty", "", lock.ErrEmptyKey},
		{"OverTheLimit", strings.Repeat("k", lock.MaxKeyLength+1), lock.ErrKeyTooLong},
		{"FarOverTheLimit", strings.Repeat("k", 1<<20), lock.ErrKeyTooLong},
	}
	for _, tc := range invalid {
		t.Run(tc.name, func(t *testing.T) {
			l := s.locker(t)
			lk, err := l.Acquire(ctxFor(t), tc.key, longTTL)
			if err == nil {
				_ = lk.Release(ctxFor(t))
			}
			wantErr(t, "Acquire", err, tc.want)
		})
	}
	t.Run("InvalidTTL", func(t *testing.T) {
		l := s.locker(t)
		for _, ttl := range []time.Duration{0, -1, -time.Hour} {
			lk, err := l.Acquire(ctxFor(t), Key(t), ttl)
			if err == nil {
				_ = lk.Release(ctxFor(t))
			}
			wantErr(t, fmt.Sprintf("Acquire with TTL %v", ttl), err, lock.ErrInvalidTTL)
		}
	})
}

func (s *suite) testContext(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	ctxs := []struct {
		name string
		ctx  context.Context
		want error
	}{
		{"Cancelled", cancelled, context.Canceled},
		{"Expired", expired, context.DeadlineExceeded},
	}
	for _, c := range ctxs {
		t.Run("Acquire"+c.name, func(t *testing.T) {
			a, b := s.locker(t), s.locker(t)
			key := Key(t)
			lk, err := a.Acquire(c.ctx, key, longTTL)
			if err == nil {
				_ = lk.Release(ctxFor(t))
				t.Fatal("Acquire with a done context succeeded")
			}
			wantErr(t, "Acquire", err, c.want)
			if errors.Is(err, lock.ErrLockNotAcquired) {
				t.Errorf("Acquire with a done context reported contention: %v", err)
			}
			wantFree(t, b, key)
		})
		t.Run("RefreshAndRelease"+c.name, func(t *testing.T) {
			a, b := s.locker(t), s.locker(t)
			key := Key(t)
			lk := mustAcquire(t, a, key, longTTL)
			wantErr(t, "Refresh", lk.Refresh(c.ctx, longTTL), c.want)
			wantErr(t, "Release", lk.Release(c.ctx), c.want)
			wantRefused(t, b, key) // still ours
			mustRelease(t, lk)
		})
	}
	t.Run("PingCancelled", func(t *testing.T) {
		l := s.locker(t)
		if err := l.Ping(cancelled); err == nil {
			t.Error("Ping with a cancelled context succeeded")
		}
		if err := l.Ping(ctxFor(t)); err != nil {
			t.Errorf("Ping: %v", err)
		}
	})
}

func (s *suite) testClose(t *testing.T) {
	t.Run("UseAfterClose", func(t *testing.T) {
		l, err := lock.New(s.newBackend(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		key := Key(t)
		lk := mustAcquire(t, l, key, longTTL)
		if err := l.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		_, err = l.Acquire(ctxFor(t), Key(t), longTTL)
		wantErr(t, "Acquire after Close", err, lock.ErrClosed)
		wantErr(t, "Refresh after Close", lk.Refresh(ctxFor(t), longTTL), lock.ErrClosed)
		wantErr(t, "Release after Close", lk.Release(ctxFor(t)), lock.ErrClosed)
		wantErr(t, "Ping after Close", l.Ping(ctxFor(t)), lock.ErrClosed)
		wantErr(t, "second Close", l.Close(), lock.ErrClosed)
	})
	t.Run("Ping", func(t *testing.T) {
		if err := s.locker(t).Ping(ctxFor(t)); err != nil {
			t.Errorf("Ping: %v", err)
		}
	})
}

// testDriver checks the parts of the driver contract that the Locker hides.
func (s *suite) testDriver(t *testing.T) {
	const owner1 = "00000000000000000000000000000001:locktest-a"
	const owner2 = "00000000000000000000000000000002:locktest-b"
	t.Run("ContentionIsAnAnswerNotAnError", func(t *testing.T) {
		b := s.backend(t)
		key := Key(t)
		if _, ok, err := b.TryAcquire(ctxFor(t), key, owner1, longTTL); !ok || err != nil {
			t.Fatalf("TryAcquire: ok=%v err=%v", ok, err)
		}
		if _, ok, err := b.TryAcquire(ctxFor(t), key, owner2, longTTL); ok || err != nil {
			t.Errorf("TryAcquire of a held key: ok=%v err=%v, want ok=false err=nil", ok, err)
		}
		if ok, err := b.Release(ctxFor(t), key, owner1); !ok || err != nil {
			t.Errorf("Release: ok=%v err=%v", ok, err)
		}
	})
	t.Run("OnlyTheOwnerCanReleaseOrRefresh", func(t *testing.T) {
		b := s.backend(t)
		key := Key(t)
		if _, ok, err := b.TryAcquire(ctxFor(t), key, owner1, longTTL); !ok || err != nil {
			t.Fatalf("TryAcquire: ok=%v err=%v", ok, err)
		}
		if ok, err := b.Release(ctxFor(t), key, owner2); ok || err != nil {
			t.Errorf("Release by another owner: ok=%v err=%v, want ok=false err=nil", ok, err)
		}
		if _, ok, err := b.Refresh(ctxFor(t), key, owner2, longTTL); ok || err != nil {
			t.Errorf("Refresh by another owner: ok=%v err=%v, want ok=false err=nil", ok, err)
		}
		if _, ok, err := b.TryAcquire(ctxFor(t), key, owner2, longTTL); ok || err != nil {
			t.Errorf("the key was freed by another owner's Release: ok=%v err=%v", ok, err)
		}
		if ok, err := b.Release(ctxFor(t), key, owner1); !ok || err != nil {
			t.Errorf("Release by the owner: ok=%v err=%v", ok, err)
		}
	})
	t.Run("ReleaseOfAnOwnerNeverGranted", func(t *testing.T) {
		b := s.backend(t)
		if ok, err := b.Release(ctxFor(t), Key(t), owner1); ok || err != nil {
			t.Errorf("Release of a free key: ok=%v err=%v, want ok=false err=nil", ok, err)
		}
		if _, ok, err := b.Refresh(ctxFor(t), Key(t), owner1, longTTL); ok || err != nil {
			t.Errorf("Refresh of a free key: ok=%v err=%v, want ok=false err=nil", ok, err)
		}
	})
	t.Run("Inspect", func(t *testing.T) {
		b := s.backend(t)
		in, ok := b.(driver.Inspector)
		if !ok {
			t.Skip("the store does not implement driver.Inspector")
		}
		key := Key(t)
		if _, held, err := in.Inspect(ctxFor(t), key); held || err != nil {
			t.Errorf("Inspect of a free key: held=%v err=%v, want false, nil", held, err)
		}
		g, ok, err := b.TryAcquire(ctxFor(t), key, owner1, longTTL)
		if !ok || err != nil {
			t.Fatalf("TryAcquire: ok=%v err=%v", ok, err)
		}
		h, held, err := in.Inspect(ctxFor(t), key)
		if !held || err != nil {
			t.Fatalf("Inspect of a held key: held=%v err=%v", held, err)
		}
		if h.Owner != owner1 || h.Token != g.Token {
			t.Errorf("Inspect = {Owner: %q, Token: %d}, want {%q, %d}", h.Owner, h.Token, owner1, g.Token)
		}
		if !s.opts.AdvisoryTTL && (h.TTL <= 0 || h.TTL > g.TTL) {
			t.Errorf("Inspect TTL = %v, want in (0, %v]", h.TTL, g.TTL)
		}
		if ok, err := b.Release(ctxFor(t), key, owner1); !ok || err != nil {
			t.Fatalf("Release: ok=%v err=%v", ok, err)
		}
		if _, held, err := in.Inspect(ctxFor(t), key); held || err != nil {
			t.Errorf("Inspect after Release: held=%v err=%v, want false, nil", held, err)
		}
	})
	t.Run("WaitFree", func(t *testing.T) {
		b := s.backend(t)
		w, ok := b.(driver.Waiter)
		if !ok {
			t.Skip("the store does not implement driver.Waiter")
		}
		key := Key(t)
		if _, ok, err := b.TryAcquire(ctxFor(t), key, owner1, longTTL); !ok || err != nil {
			t.Fatalf("TryAcquire: ok=%v err=%v", ok, err)
		}
		// WaitFree may return early (the caller then tries again), so
		// loop as retry does until it sees the key free.
		done := make(chan error, 1)
		go func() {
			ctx := ctxFor(t)
			for {
				if err := w.WaitFree(ctx, key); err != nil {
					done <- err
					return
				}
				if _, ok, err := b.TryAcquire(ctx, key, owner2, longTTL); err != nil || ok {
					done <- err
					return
				}
			}
		}()
		if ok, err := b.Release(ctxFor(t), key, owner1); !ok || err != nil {
			t.Fatalf("Release: ok=%v err=%v", ok, err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("WaitFree/TryAcquire: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the waiter did not get the key within 10s of its release")
		}
		if ok, err := b.Release(ctxFor(t), key, owner2); !ok || err != nil {
			t.Errorf("Release by the waiter: ok=%v err=%v", ok, err)
		}
	})
	t.Run("WaitFreeEndsWithContext", func(t *testing.T) {
		b := s.backend(t)
		w, ok := b.(driver.Waiter)
		if !ok {
			t.Skip("the store does not implement driver.Waiter")
		}
		key := Key(t)
		if _, ok, err := b.TryAcquire(ctxFor(t), key, owner1, longTTL); !ok || err != nil {
			t.Fatalf("TryAcquire: ok=%v err=%v", ok, err)
		}
		defer b.Release(ctxFor(t), key, owner1)
		ctx, cancel := context.WithTimeout(ctxFor(t), 100*time.Millisecond)
		defer cancel()
		for ctx.Err() == nil {
			_ = w.WaitFree(ctx, key) // nil means "try again"
		}
	})
}

func (s *suite) testHold(t *testing.T) {
	t.Run("KeepsTheLockPastItsTTL", func(t *testing.T) {
		if s.opts.AdvisoryTTL {
			t.Skip("the store declares its TTL advisory")
		}
		a, b := s.locker(t), s.locker(t)
		key := Key(t)
		// Long enough that a scheduling stall of a few hundred ms on a
		// loaded machine does not outlast TTL − margin; held for two TTLs.
		ttl := s.opts.roundUp(max(s.opts.shortTTL(), 1200*time.Millisecond))
		lk := mustAcquire(t, a, key, ttl)
		held, stop := lock.Hold(ctxFor(t), lk, nil)
		end := time.Now().Add(2 * ttl)
		for time.Now().Before(end) {
			wantRefused(t, b, key)
			if held.Err() != nil {
				t.Fatalf("held context ended: %v", context.Cause(held))
			}
			time.Sleep(ttl / 5)
		}
		if err := stop(); err != nil {
			t.Fatalf("stop: %v", err)
		}
		if held.Err() == nil {
			t.Error("held context still live after stop")
		}
		wantFree(t, b, key)
	})
	t.Run("StopReleasesEvenAfterTheContextEnded", func(t *testing.T) {
		a, b := s.locker(t), s.locker(t)
		key := Key(t)
		lk := mustAcquire(t, a, key, longTTL)
		ctx, cancel := context.WithCancel(context.Background())
		_, stop := lock.Hold(ctx, lk, nil)
		cancel()
		if err := stop(); err != nil {
			t.Fatalf("stop after the parent context ended: %v", err)
		}
		wantFree(t, b, key)
	})
	t.Run("Do", func(t *testing.T) {
		a, b := s.locker(t), s.locker(t)
		key := Key(t)
		ran := false
		err := lock.Do(ctxFor(t), a, key, longTTL, func(ctx context.Context) error {
			ran = true
			wantRefused(t, b, key)
			return nil
		})
		if err != nil || !ran {
			t.Fatalf("Do: ran=%v err=%v", ran, err)
		}
		wantFree(t, b, key)
	})
}

// testStress runs 8 goroutines, on 4 Lockers, each making 500 attempts on
// 4 keys, and checks every critical section.
func (s *suite) testStress(t *testing.T) {
	const (
		lockers    = 4
		goroutines = 8
		attempts   = 500
		nkeys      = 4
	)
	ls := make([]lock.Locker, lockers)
	for i := range ls {
		ls[i] = s.locker(t)
	}
	keys := make([]string, nkeys)
	for i := range keys {
		keys[i] = Key(t)
	}
	c := NewChecker()
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	// 4,000 attempts take seconds on a store with millisecond round trips
	// and much longer on a loaded machine: a deadline of its own.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for g := range goroutines {
		wg.Go(func() {
			who := fmt.Sprintf("g%d", g)
			l := ls[g%lockers]
			for i := range attempts {
				key := keys[(g+i)%nkeys]
				lk, err := l.Acquire(ctx, key, longTTL)
				if errors.Is(err, lock.ErrLockNotAcquired) {
					continue
				}
				if err != nil {
					errs <- fmt.Errorf("%s: Acquire: %w", who, err)
					return
				}
				c.Enter(key, who, lk.Token())
				runtime.Gosched() // let others try to enter
				c.Exit(key, who)
				if err := lk.Release(ctx); err != nil {
					errs <- fmt.Errorf("%s: Release: %w", who, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, p := range c.Problems() {
		t.Error(p)
	}
	if c.Sections() == 0 {
		t.Error("no acquisition succeeded")
	}
	t.Logf("%d critical sections in %d attempts", c.Sections(), goroutines*attempts)
}
