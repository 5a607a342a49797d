package lock_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dlockgo/dlock/backends/memlock"
	"github.com/dlockgo/dlock/internal/leakcheck"
	"github.com/dlockgo/dlock/lock"
	"github.com/dlockgo/dlock/lock/locktest"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// fixture is a memlock store, a fault-injecting backend on it, a Locker on
// that backend, and a second, fault-free Locker on the same store.
type fixture struct {
	store  *memlock.Store
	faulty *locktest.Faulty
	l      lock.Locker // through faulty
	other  lock.Locker // straight to the store
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	s, err := memlock.NewStore(nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{store: s, faulty: locktest.NewFaulty(s.Backend())}
	if f.l, err = lock.New(f.faulty, nil); err != nil {
		t.Fatal(err)
	}
	if f.other, err = s.NewLocker(nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.l.Close(); f.other.Close() })
	return f
}

// isFree reports whether key can be taken by the fault-free Locker now.
func (f *fixture) isFree(t *testing.T, key string) bool {
	t.Helper()
	lk, err := f.other.Acquire(context.Background(), key, time.Minute)
	if errors.Is(err, lock.ErrLockNotAcquired) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	lk.Release(context.Background())
	return true
}

// stealBehindItsBack frees key in the store without the holder knowing, as
// an operator's DEL or a store failover would.
func (f *fixture) stealBehindItsBack(t *testing.T, key string) {
	t.Helper()
	b := f.store.Backend()
	h, ok, err := b.Inspect(context.Background(), key)
	if err != nil || !ok {
		t.Fatalf("Inspect(%q): ok=%v err=%v", key, ok, err)
	}
	if ok, err := b.Release(context.Background(), key, h.Owner); !ok || err != nil {
		t.Fatalf("Release behind its back: ok=%v err=%v", ok, err)
	}
}

func TestNew_RejectsBadArguments(t *testing.T) {
	if _, err := lock.New(nil, nil); !errors.Is(err, lock.ErrNilDatabaseClient) {
		t.Errorf("New(nil) = %v, want ErrNilDatabaseClient", err)
	}
	s, _ := memlock.NewStore(nil)
	if _, err := lock.New(s.Backend(), &lock.Options{Identity: strings.Repeat("x", lock.MaxIdentityLength+1)}); err == nil {
		t.Error("New accepted an identity over the limit")
	}
	if _, err := lock.New(s.Backend(), &lock.Options{CleanupTimeout: -1}); err == nil {
		t.Error("New accepted a negative CleanupTimeout")
	}
}

func TestValidateKey(t *testing.T) {
	tests := []struct {
		name string
		key  string
		want error
	}{
		{"Empty", "", lock.ErrEmptyKey},
		{"OneByte", "k", nil},
		{"NUL", "\x00", nil},
		{"AtTheLimit", strings.Repeat("k", lock.MaxKeyLength), nil},
		{"OverTheLimit", strings.Repeat("k", lock.MaxKeyLength+1), lock.ErrKeyTooLong},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := lock.ValidateKey(tc.key)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("ValidateKey = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestQuoteKey_KeepsMessagesShortAndPrintable(t *testing.T) {
	tests := []struct{ key, want string }{
		{"a", `"a"`},
		{"\x00\xff", `"\x00\xff"`},
		{strings.Repeat("k", 100), `"` + strings.Repeat("k", 64) + `"…(100 bytes)`},
	}
	for _, tc := range tests {
		if got := lock.QuoteKey(tc.key); got != tc.want {
			t.Errorf("QuoteKey(%q) = %s, want %s", tc.key, got, tc.want)
		}
	}
}

func TestOwnerIdentity(t *testing.T) {
	tests := []struct{ owner, want string }{
		{"0123456789abcdef0123456789abcdef", ""},
		{"0123456789abcdef0123456789abcdef:host-a", "host-a"},
		{"0123456789abcdef0123456789abcdef:a:b", "a:b"},
		{"short:x", ""},
	}
	for _, tc := range tests {
		if got := lock.OwnerIdentity(tc.owner); got != tc.want {
			t.Errorf("OwnerIdentity(%q) = %q, want %q", tc.owner, got, tc.want)
		}
	}
}

func TestAcquire_StoreFailureIsNotContention(t *testing.T) {
	f := newFixture(t)
	f.faulty.FailNext(1, nil)
	_, err := f.l.Acquire(context.Background(), "k", time.Minute)
	if !errors.Is(err, locktest.ErrInjected) || errors.Is(err, lock.ErrLockNotAcquired) {
		t.Errorf("Acquire = %v, want the store's error and not ErrLockNotAcquired", err)
	}
	if !strings.Contains(err.Error(), `"k"`) {
		t.Errorf("error %q does not name the key", err)
	}
}

func TestAcquire_LostReplyLeavesNoOrphanLock(t *testing.T) {
	f := newFixture(t)
	f.faulty.LoseNextReplies(1)
	_, err := f.l.Acquire(context.Background(), "k", time.Hour)
	if !errors.Is(err, locktest.ErrLostReply) {
		t.Fatalf("Acquire = %v, want the lost-reply error", err)
	}
	// The store applied the acquisition; the Locker must release it in the
	// background. Close waits for that clean-up.
	if err := f.l.Close(); err != nil {
		t.Fatal(err)
	}
	if !f.isFree(t, "k") {
		t.Error("the ambiguous acquisition was left held")
	}
}

func TestAcquire_ContextEndingMidCallReturnsPromptly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		f.faulty.SetLatency(time.Hour)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start := time.Now()
		_, err := f.l.Acquire(ctx, "k", time.Hour)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Acquire = %v, want context.DeadlineExceeded", err)
		}
		if d := time.Since(start); d != time.Second {
			t.Errorf("Acquire returned after %v, want at the 1s deadline", d)
		}
		f.faulty.SetLatency(0)
		f.l.Close() // waits for the background clean-up
		if !f.isFree(t, "k") {
			t.Error("key held after an acquisition cancelled mid-call")
		}
	})
}

func TestHold_RefreshesUntilStopped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		lk, err := f.l.Acquire(context.Background(), "k", 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		calls := f.faulty.Calls()
		held, stop := lock.Hold(context.Background(), lk, nil)
		time.Sleep(10 * time.Minute)
		synctest.Wait() // let the refresh due at exactly 10m finish
		if err := held.Err(); err != nil {
			t.Fatalf("held context ended: %v", context.Cause(held))
		}
		if f.isFree(t, "k") {
			t.Fatal("lock expired while held")
		}
		// One refresh per TTL/3 = 10s.
		if n := f.faulty.Calls() - calls; n != 60 {
			t.Errorf("%d refreshes in 10m, want 60 (one per 10s)", n)
		}
		if err := stop(); err != nil {
			t.Fatalf("stop: %v", err)
		}
		if held.Err() == nil {
			t.Error("held context live after stop")
		}
		if !f.isFree(t, "k") {
			t.Error("stop did not release the lock")
		}
		if err := stop(); err != nil {
			t.Errorf("second stop = %v, want the first result (nil)", err)
		}
	})
}

func TestHold_CancelsWhenRefreshSaysNotHeld(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		lk, _ := f.l.Acquire(context.Background(), "k", 30*time.Second)
		held, stop := lock.Hold(context.Background(), lk, nil)
		defer stop()
		start := time.Now()
		f.stealBehindItsBack(t, "k")
		<-held.Done()
		if d := time.Since(start); d != 10*time.Second {
			t.Errorf("cancelled after %v, want at the next refresh (10s)", d)
		}
		if cause := context.Cause(held); !errors.Is(cause, lock.ErrLockNotHeld) {
			t.Errorf("cause = %v, want ErrLockNotHeld", cause)
		}
		if err := stop(); !errors.Is(err, lock.ErrLockNotHeld) {
			t.Errorf("stop = %v, want ErrLockNotHeld", err)
		}
	})
}

func TestHold_CancelsBeforeTheTTLWhenTheStoreIsUnreachable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		start := time.Now()
		lk, _ := f.l.Acquire(context.Background(), "k", 30*time.Second)
		f.faulty.FailNext(1<<30, nil)
		held, stop := lock.Hold(context.Background(), lk, nil)
		defer stop()
		<-held.Done()
		// TTL 30s − margin 6s, counted from the start of the acquisition.
		if d := time.Since(start); d != 24*time.Second {
			t.Errorf("cancelled after %v, want 24s (TTL − margin)", d)
		}
		cause := context.Cause(held)
		if !errors.Is(cause, lock.ErrLockNotHeld) || !errors.Is(cause, locktest.ErrInjected) {
			t.Errorf("cause = %v, want ErrLockNotHeld with the last store error", cause)
		}
		if f.isFree(t, "k") {
			t.Error("the store freed the lock before the holder was told")
		}
	})
}

func TestHold_HangingRefreshIsBoundedByTheDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		start := time.Now()
		lk, _ := f.l.Acquire(context.Background(), "k", 30*time.Second)
		f.faulty.SetLatency(time.Hour)
		held, stop := lock.Hold(context.Background(), lk, &lock.HoldOptions{Margin: time.Second})
		<-held.Done()
		if d := time.Since(start); d != 29*time.Second {
			t.Errorf("cancelled after %v, want 29s (TTL − margin)", d)
		}
		f.faulty.SetLatency(0)
		stop()
	})
}

// A store client that ignores contexts (a statement on a silent
// connection) must not hold the cancellation back: the holder is told at
// TTL − margin, while the refresh is still blocked.
func TestHold_RefreshIgnoringItsContextDoesNotDelayTheCancellation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		start := time.Now()
		lk, _ := f.l.Acquire(context.Background(), "k", 30*time.Second)
		f.faulty.Stall()
		held, stop := lock.Hold(context.Background(), lk, nil)
		<-held.Done()
		if d := time.Since(start); d != 24*time.Second {
			t.Errorf("cancelled after %v, want 24s (TTL − margin) with the refresh still blocked", d)
		}
		if cause := context.Cause(held); !errors.Is(cause, lock.ErrLockNotHeld) {
			t.Errorf("cause = %v, want ErrLockNotHeld", cause)
		}
		f.faulty.Unstall()
		stop()
	})
}

// A grant that arrives after the TTL it was asked for could already belong
// to someone else: Acquire must not hand it out as held, and must free it.
func TestAcquire_GrantArrivingAfterTheTTLIsNotHandedOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		f.faulty.SetLatency(2 * time.Second)
		_, err := f.l.Acquire(context.Background(), "k", time.Second)
		if !errors.Is(err, lock.ErrLockNotHeld) || errors.Is(err, lock.ErrLockNotAcquired) {
			t.Errorf("Acquire = %v, want ErrLockNotHeld (a late grant), not ErrLockNotAcquired", err)
		}
		f.faulty.SetLatency(0)
		f.l.Close() // waits for the background release
		if !f.isFree(t, "k") {
			t.Error("the late grant was left held")
		}
	})
}

// A lock whose deadline (expiry − margin) has passed when Hold starts is
// reported lost before Hold returns: the caller's first write sees it.
func TestHold_LockAlreadyPastItsDeadlineIsCancelledBeforeHoldReturns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		lk, err := f.l.Acquire(context.Background(), "k", 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(9 * time.Second) // past TTL − margin (10s − 2s)
		held, stop := lock.Hold(context.Background(), lk, nil)
		defer stop()
		if cause := context.Cause(held); !errors.Is(cause, lock.ErrLockNotHeld) {
			t.Errorf("held context on return: cause %v, want ErrLockNotHeld", cause)
		}
	})
}

func TestHold_CancelsAtOnceWhenTheStorePushesLoss(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		lk, _ := f.l.Acquire(context.Background(), "k", 30*time.Second)
		held, stop := lock.Hold(context.Background(), lk, nil)
		defer stop()
		start := time.Now()
		f.faulty.Cut()
		<-held.Done()
		if d := time.Since(start); d != 0 {
			t.Errorf("cancelled %v after the loss, want at once", d)
		}
		if cause := context.Cause(held); !errors.Is(cause, lock.ErrLockNotHeld) {
			t.Errorf("cause = %v, want ErrLockNotHeld", cause)
		}
		f.faulty.Heal()
	})
}

func TestHold_ParentContextEndKeepsTheLockUntilStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		lk, _ := f.l.Acquire(context.Background(), "k", 30*time.Second)
		ctx, cancel := context.WithCancel(context.Background())
		held, stop := lock.Hold(ctx, lk, nil)
		cancel()
		<-held.Done()
		if errors.Is(context.Cause(held), lock.ErrLockNotHeld) {
			t.Error("parent cancellation reported as a lost lock")
		}
		if f.isFree(t, "k") {
			t.Error("lock released before stop")
		}
		if err := stop(); err != nil {
			t.Errorf("stop = %v", err)
		}
		if !f.isFree(t, "k") {
			t.Error("stop did not release")
		}
	})
}

func TestDo(t *testing.T) {
	t.Run("RunsUnderTheLockAndReleases", func(t *testing.T) {
		f := newFixture(t)
		err := lock.Do(context.Background(), f.l, "k", time.Minute, func(ctx context.Context) error {
			if f.isFree(t, "k") {
				t.Error("key free while fn runs")
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if !f.isFree(t, "k") {
			t.Error("key held after Do")
		}
	})
	t.Run("BusyKeyDoesNotRunFn", func(t *testing.T) {
		f := newFixture(t)
		lk, _ := f.other.Acquire(context.Background(), "k", time.Minute)
		defer lk.Release(context.Background())
		err := lock.Do(context.Background(), f.l, "k", time.Minute, func(context.Context) error {
			t.Error("fn ran on a busy key")
			return nil
		})
		if !errors.Is(err, lock.ErrLockNotAcquired) {
			t.Errorf("Do = %v, want ErrLockNotAcquired", err)
		}
	})
	t.Run("ReturnsFnError", func(t *testing.T) {
		f := newFixture(t)
		boom := errors.New("boom")
		err := lock.Do(context.Background(), f.l, "k", time.Minute, func(context.Context) error { return boom })
		if !errors.Is(err, boom) {
			t.Errorf("Do = %v, want boom", err)
		}
	})
	t.Run("LossIsReported", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := newFixture(t)
			err := lock.Do(context.Background(), f.l, "k", 30*time.Second, func(ctx context.Context) error {
				f.stealBehindItsBack(t, "k")
				<-ctx.Done()
				return ctx.Err()
			})
			if !errors.Is(err, lock.ErrLockNotHeld) || !errors.Is(err, context.Canceled) {
				t.Errorf("Do = %v, want ErrLockNotHeld and fn's context.Canceled", err)
			}
		})
	})
	t.Run("PanicReleases", func(t *testing.T) {
		f := newFixture(t)
		func() {
			defer func() {
				if recover() == nil {
					t.Error("panic swallowed")
				}
			}()
			lock.Do(context.Background(), f.l, "k", time.Minute, func(context.Context) error { panic("boom") })
		}()
		if !f.isFree(t, "k") {
			t.Error("key held after fn panicked")
		}
	})
}

func TestWithIdentity_OverridesTheLockersIdentity(t *testing.T) {
	s, _ := memlock.NewStore(nil)
	l, _ := s.NewLocker(&lock.Options{Identity: "process"})
	defer l.Close()
	ctx := context.Background()
	in := l.(lock.Inspector)
	tests := []struct {
		name string
		ctx  context.Context
		want string
	}{
		{"LockersOwn", ctx, "process"},
		{"FromContext", lock.WithIdentity(ctx, "elector-7"), "elector-7"},
		{"EmptyFromContextMeansNone", lock.WithIdentity(ctx, ""), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lk, err := l.Acquire(tc.ctx, "k", time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			defer lk.Release(ctx)
			h, ok, err := in.Inspect(ctx, "k")
			if err != nil || !ok {
				t.Fatalf("Inspect: %v %v", ok, err)
			}
			if h.Identity != tc.want || h.Token != lk.Token() {
				t.Errorf("Inspect = %+v, want identity %q, token %d", h, tc.want, lk.Token())
			}
		})
	}
	_, err := l.Acquire(lock.WithIdentity(ctx, strings.Repeat("x", lock.MaxIdentityLength+1)), "k", time.Minute)
	if err == nil {
		t.Error("Acquire accepted an identity over the limit")
	}
	if _, ok, err := in.Inspect(ctx, "free"); ok || err != nil {
		t.Errorf("Inspect of a free key = %v, %v", ok, err)
	}
}
