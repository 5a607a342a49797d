package retry_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dlockgo/dlock/backends/memlock"
	"github.com/dlockgo/dlock/internal/leakcheck"
	"github.com/dlockgo/dlock/lock"
	"github.com/dlockgo/dlock/lock/driver"
	"github.com/dlockgo/dlock/lock/locktest"
	"github.com/dlockgo/dlock/retry"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

const key = "k"

// recorder notes when each Acquire began, relative to t0. It has no
// WaitFree, so retry sleeps between attempts.
type recorder struct {
	lock.Locker
	t0 time.Time
	mu sync.Mutex
	at []time.Duration
}

func newRecorder(l lock.Locker) *recorder { return &recorder{Locker: l, t0: time.Now()} }

func (r *recorder) Acquire(ctx context.Context, key string, ttl time.Duration) (lock.Lock, error) {
	r.mu.Lock()
	r.at = append(r.at, time.Since(r.t0))
	r.mu.Unlock()
	return r.Locker.Acquire(ctx, key, ttl)
}

func (r *recorder) attempts() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.at)
}

// waitingRecorder is a recorder that forwards WaitFree.
type waitingRecorder struct{ *recorder }

func (r waitingRecorder) WaitFree(ctx context.Context, key string) error {
	return r.Locker.(lock.Waiter).WaitFree(ctx, key)
}

// noWait hides a store's driver.Waiter.
type noWait struct{ driver.Backend }

// fixture is a memlock store with key held by another Locker until
// release is called, and a Locker for the code under test.
type fixture struct {
	store   *memlock.Store
	l       lock.Locker
	release func()
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	s, err := memlock.NewStore(nil)
	if err != nil {
		t.Fatal(err)
	}
	holder, err := s.NewLocker(nil)
	if err != nil {
		t.Fatal(err)
	}
	l, err := s.NewLocker(nil)
	if err != nil {
		t.Fatal(err)
	}
	lk, err := holder.Acquire(context.Background(), key, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	f := &fixture{store: s, l: l, release: func() {
		once.Do(func() { lk.Release(context.Background()) })
	}}
	t.Cleanup(func() { f.release(); holder.Close(); l.Close() })
	return f
}

func secs(s ...float64) []time.Duration {
	out := make([]time.Duration, len(s))
	for i, v := range s {
		out[i] = time.Duration(v * float64(time.Second))
	}
	return out
}

func opts(o retry.Options, rnd func(int64) int64) *retry.Options {
	retry.SetRand(&o, rnd)
	return &o
}

var (
	randMax  = func(n int64) int64 { return n - 1 } // every wait is its ceiling
	randZero = func(int64) int64 { return 0 }       // every wait is zero
	randHalf = func(n int64) int64 { return n / 2 }
)

func TestAcquire_ScheduleIsExponentialWithFullJitter(t *testing.T) {
	base := retry.Options{InitialInterval: time.Second, Multiplier: 2, MaxInterval: 5 * time.Second, MaxAttempts: 7}
	// Ceilings: 1s, 2s, 4s, then capped at 5s.
	for _, tc := range []struct {
		name string
		rand func(int64) int64
		want []time.Duration
	}{
		{"upper bound", randMax, secs(0, 1, 3, 7, 12, 17, 22)},
		{"lower bound", randZero, secs(0, 0, 0, 0, 0, 0, 0)},
		{"middle", randHalf, secs(0, 0.5, 1.5, 3.5, 6, 8.5, 11)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFixture(t)
				rec := newRecorder(f.l)
				_, err := retry.Acquire(t.Context(), rec, key, time.Minute, opts(base, tc.rand))
				if !errors.Is(err, lock.ErrLockNotAcquired) {
					t.Fatalf("err = %v, want ErrLockNotAcquired", err)
				}
				if got := rec.attempts(); !slices.Equal(got, tc.want) {
					t.Errorf("attempts at %v, want %v", got, tc.want)
				}
				// No wait after the last attempt.
				if got, want := time.Since(rec.t0), tc.want[len(tc.want)-1]; got != want {
					t.Errorf("returned after %v, want %v", got, want)
				}
			})
		})
	}
}

func TestAcquire_FullJitterStaysWithinTheExponentialCeiling(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		rec := newRecorder(f.l)
		var ceilings []time.Duration
		rnd := func(n int64) int64 {
			ceilings = append(ceilings, time.Duration(n-1))
			return rand.Int64N(n)
		}
		const attempts = 200
		o := opts(retry.Options{InitialInterval: time.Millisecond, MaxInterval: 64 * time.Millisecond, MaxAttempts: attempts}, rnd)
		if _, err := retry.Acquire(t.Context(), rec, key, time.Minute, o); !errors.Is(err, lock.ErrLockNotAcquired) {
			t.Fatalf("err = %v", err)
		}
		at := rec.attempts()
		if len(at) != attempts || len(ceilings) != attempts-1 {
			t.Fatalf("%d attempts and %d waits, want %d and %d", len(at), len(ceilings), attempts, attempts-1)
		}
		belowCeiling := 0
		want := time.Millisecond
		for i, c := range ceilings {
			if i > 0 {
				want = min(2*want, 64*time.Millisecond) // default Multiplier 2
			}
			if c != want {
				t.Errorf("wait %d: ceiling %v, want %v", i+1, c, want)
			}
			gap := at[i+1] - at[i]
			if gap < 0 || gap > c {
				t.Errorf("wait %d: %v, outside [0, %v]", i+1, gap, c)
			}
			if gap < c {
				belowCeiling++
			}
		}
		if belowCeiling == 0 {
			t.Error("every wait was its ceiling: no jitter")
		}
	})
}

func TestAcquire_MaxElapsedTimeShortensTheLastWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		rec := newRecorder(f.l)
		o := opts(retry.Options{InitialInterval: time.Second, MaxInterval: 8 * time.Second, MaxElapsedTime: 10 * time.Second}, randMax)
		_, err := retry.Acquire(t.Context(), rec, key, time.Minute, o)
		if !errors.Is(err, lock.ErrLockNotAcquired) || errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want ErrLockNotAcquired and no context error", err)
		}
		if got, want := rec.attempts(), secs(0, 1, 3, 7, 10); !slices.Equal(got, want) {
			t.Errorf("attempts at %v, want %v", got, want)
		}
		if got := time.Since(rec.t0); got != 10*time.Second {
			t.Errorf("returned after %v, want 10s", got)
		}
	})
}

func TestAcquire_MaxAttemptsOneMeansNoRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		rec := newRecorder(f.l)
		_, err := retry.Acquire(t.Context(), rec, key, time.Minute, &retry.Options{MaxAttempts: 1})
		if !errors.Is(err, lock.ErrLockNotAcquired) {
			t.Fatalf("err = %v", err)
		}
		if got := rec.attempts(); !slices.Equal(got, secs(0)) {
			t.Errorf("attempts at %v, want one at 0", got)
		}
	})
}

func TestAcquire_ContextEndingMidWaitReturnsAtOnceWithBothErrors(t *testing.T) {
	cause := errors.New("shutting down")
	for _, tc := range []struct {
		name string
		ctx  func(context.Context) context.Context
		want []error
	}{
		{"deadline", func(ctx context.Context) context.Context {
			ctx, cancel := context.WithTimeout(ctx, 2500*time.Millisecond)
			context.AfterFunc(ctx, cancel)
			return ctx
		}, []error{context.DeadlineExceeded, lock.ErrLockNotAcquired}},
		{"cancel with cause", func(ctx context.Context) context.Context {
			ctx, cancel := context.WithCancelCause(ctx)
			time.AfterFunc(2500*time.Millisecond, func() { cancel(cause) })
			return ctx
		}, []error{context.Canceled, cause, lock.ErrLockNotAcquired}},
	} {
		for _, fast := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/waitfree=%v", tc.name, fast), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					f := newFixture(t)
					rec := newRecorder(f.l)
					var l lock.Locker = rec
					if fast {
						l = waitingRecorder{rec}
					}
					o := opts(retry.Options{InitialInterval: time.Second, MaxInterval: 8 * time.Second}, randMax)
					_, err := retry.Acquire(tc.ctx(t.Context()), l, key, time.Minute, o)
					if got := time.Since(rec.t0); got != 2500*time.Millisecond {
						t.Errorf("returned after %v, want 2.5s", got)
					}
					for _, want := range tc.want {
						if !errors.Is(err, want) {
							t.Errorf("errors.Is(%v, %v) = false", err, want)
						}
					}
					if got, want := rec.attempts(), secs(0, 1); !slices.Equal(got, want) {
						t.Errorf("attempts at %v, want %v", got, want)
					}
				})
			})
		}
	}
}

func TestAcquire_WaitsForTheReleaseWhenTheStoreCanWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		rec := newRecorder(f.l)
		time.AfterFunc(2500*time.Millisecond, f.release)
		o := opts(retry.Options{InitialInterval: time.Second, MaxInterval: time.Second}, randMax)
		lk, err := retry.Acquire(t.Context(), waitingRecorder{rec}, key, time.Minute, o)
		if err != nil {
			t.Fatal(err)
		}
		defer lk.Release(context.Background())
		// Each WaitFree is bounded by the interval (1s), then the release
		// wakes the waiter at once, not at the next multiple of 1s.
		if got, want := rec.attempts(), secs(0, 1, 2, 2.5); !slices.Equal(got, want) {
			t.Errorf("attempts at %v, want %v", got, want)
		}
	})
}

func TestAcquire_EarlyWakeUpsDoNotSpin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		// Faulty's WaitFree returns at once when its store cannot wait.
		l, err := lock.New(locktest.NewFaulty(noWait{f.store.Backend()}), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		rec := newRecorder(l)
		o := opts(retry.Options{InitialInterval: time.Second, MaxInterval: time.Second, MaxElapsedTime: 3 * time.Second}, randMax)
		if _, err := retry.Acquire(t.Context(), waitingRecorder{rec}, key, time.Minute, o); !errors.Is(err, lock.ErrLockNotAcquired) {
			t.Fatalf("err = %v", err)
		}
		// At most three extra attempts per interval: a few early wake-ups
		// in a row are normal (waiters racing for one release), more are
		// a wait that returns at once, and then a jittered sleep follows.
		if got, want := rec.attempts(), secs(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3); !slices.Equal(got, want) {
			t.Errorf("attempts at %v, want %v", got, want)
		}
	})
}

func TestAcquire_FallsBackToSleepingWhenTheStoreCannotWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		l, err := lock.New(noWait{f.store.Backend()}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		rec := newRecorder(l)
		o := opts(retry.Options{InitialInterval: time.Second, MaxInterval: time.Second, MaxAttempts: 4}, randHalf)
		if _, err := retry.Acquire(t.Context(), waitingRecorder{rec}, key, time.Minute, o); !errors.Is(err, lock.ErrLockNotAcquired) {
			t.Fatalf("err = %v", err)
		}
		if got, want := rec.attempts(), secs(0, 0.5, 1, 1.5); !slices.Equal(got, want) {
			t.Errorf("attempts at %v, want %v", got, want)
		}
	})
}

func TestAcquire_StoreErrors(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name      string
		retry     bool
		key       string
		ttl       time.Duration
		close     bool
		wantErr   error // nil: acquired
		wantTries int
	}{
		{"not retried by default", false, key, time.Minute, false, boom, 1},
		{"retried when asked", true, key, time.Minute, false, nil, 2},
		{"empty key is never retried", true, "", time.Minute, false, lock.ErrEmptyKey, 1},
		{"bad TTL is never retried", true, key, 0, false, lock.ErrInvalidTTL, 1},
		{"closed Locker is never retried", true, key, time.Minute, true, lock.ErrClosed, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s, _ := memlock.NewStore(nil)
				faulty := locktest.NewFaulty(s.Backend())
				l, err := lock.New(faulty, nil)
				if err != nil {
					t.Fatal(err)
				}
				if tc.close {
					l.Close()
				} else {
					defer l.Close()
				}
				faulty.FailNext(1, boom)
				rec := newRecorder(l)
				lk, err := retry.Acquire(t.Context(), rec, tc.key, tc.ttl, &retry.Options{RetryStoreErrors: tc.retry})
				if tc.wantErr == nil {
					if err != nil {
						t.Fatal(err)
					}
					lk.Release(t.Context())
				} else if !errors.Is(err, tc.wantErr) || errors.Is(err, lock.ErrLockNotAcquired) {
					t.Fatalf("err = %v, want %v and not ErrLockNotAcquired", err, tc.wantErr)
				}
				if got := len(rec.attempts()); got != tc.wantTries {
					t.Errorf("%d attempts, want %d", got, tc.wantTries)
				}
			})
		})
	}
}

func TestAcquire_NoLockLeakedWhenContextEndsMidAttempt(t *testing.T) {
	for _, tc := range []struct {
		name     string
		lose     int           // replies lost after the store applied the call
		held     time.Duration // the key is held by another Locker this long
		deadline time.Duration
	}{
		{"during the first attempt", 0, 0, 500 * time.Millisecond},
		// Attempt 1 (0–1s) is refused, WaitFree times out at 1.1s, attempt
		// 2 would reach the store, free by then, at 2.1s.
		{"during a later attempt", 0, 1200 * time.Millisecond, 2050 * time.Millisecond},
		{"after a lost reply", 1, 0, 1500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s, _ := memlock.NewStore(nil)
				other, _ := s.NewLocker(nil)
				defer other.Close()
				if tc.held > 0 {
					if _, err := other.Acquire(t.Context(), key, tc.held); err != nil {
						t.Fatal(err)
					}
				}
				faulty := locktest.NewFaulty(s.Backend())
				faulty.SetLatency(time.Second)
				faulty.LoseNextReplies(tc.lose)
				l, err := lock.New(faulty, nil)
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(t.Context(), tc.deadline)
				defer cancel()
				start := time.Now()
				o := opts(retry.Options{InitialInterval: 100 * time.Millisecond, RetryStoreErrors: true}, randMax)
				lk, err := retry.Acquire(ctx, l, key, time.Hour, o)
				if lk != nil || !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("Acquire = %v, %v; want no lock and DeadlineExceeded", lk, err)
				}
				if got := time.Since(start); got != tc.deadline {
					t.Errorf("returned after %v, want %v", got, tc.deadline)
				}
				if err := l.Close(); err != nil { // waits for the background clean-up
					t.Fatal(err)
				}
				if _, held, _ := s.Backend().Inspect(context.Background(), key); held {
					t.Error("the key is still held after the Locker was closed")
				}
			})
		})
	}
}

func TestAcquire_ManyWaitersExcludeEachOtherAndAllGetTheLock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, _ := memlock.NewStore(nil)
		l, _ := s.NewLocker(nil)
		defer l.Close()
		r := retry.Wrap(l, &retry.Options{InitialInterval: time.Millisecond, MaxInterval: 50 * time.Millisecond})
		check := locktest.NewChecker()
		var wg sync.WaitGroup
		for i := range 8 {
			for _, fast := range []bool{false, true} {
				who := fmt.Sprintf("w%d/%v", i, fast)
				var lk lock.Locker = r
				if !fast {
					lk = struct{ lock.Locker }{r} // hides WaitFree: polls
				}
				wg.Go(func() {
					h, err := lk.Acquire(t.Context(), key, time.Minute)
					if err != nil {
						t.Error(err)
						return
					}
					check.Enter(key, who, h.Token())
					time.Sleep(10 * time.Millisecond)
					check.Exit(key, who)
					if err := h.Release(t.Context()); err != nil {
						t.Error(err)
					}
				})
			}
		}
		wg.Wait()
		if p := check.Problems(); len(p) > 0 {
			t.Error(p)
		}
		if n := check.Sections(); n != 16 {
			t.Errorf("%d sections, want 16", n)
		}
	})
}

func TestWrap_ForwardsTheWrappedLocker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		r := retry.Wrap(f.l, nil)
		if h, ok, err := r.Inspect(t.Context(), key); err != nil || !ok || h.Token != 1 {
			t.Fatalf("Inspect = %+v, %v, %v; want the holder with token 1", h, ok, err)
		}
		done := make(chan struct{})
		time.AfterFunc(time.Minute, func() { close(done); f.release() })
		if err := r.WaitFree(t.Context(), key); err != nil {
			t.Fatal(err)
		}
		select {
		case <-done:
		default:
			t.Fatal("WaitFree returned before the release")
		}
		if err := r.Ping(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		if err := f.l.Ping(t.Context()); !errors.Is(err, lock.ErrClosed) {
			t.Fatalf("the wrapped Locker is not closed: %v", err)
		}
		bare := retry.Wrap(struct{ lock.Locker }{f.l}, nil)
		if err := bare.WaitFree(t.Context(), key); !errors.Is(err, errors.ErrUnsupported) {
			t.Fatalf("WaitFree without a waiter = %v, want ErrUnsupported", err)
		}
		if _, _, err := bare.Inspect(t.Context(), key); !errors.Is(err, errors.ErrUnsupported) {
			t.Fatalf("Inspect without an inspector = %v, want ErrUnsupported", err)
		}
	})
}

func TestOptions_Invalid(t *testing.T) {
	for _, o := range []retry.Options{
		{InitialInterval: -1},
		{MaxInterval: -1},
		{MaxElapsedTime: -1},
		{MaxAttempts: -1},
		{Multiplier: 0.5},
		{InitialInterval: time.Second, MaxInterval: time.Millisecond},
	} {
		s, _ := memlock.NewStore(nil)
		l, _ := s.NewLocker(nil)
		if _, err := retry.Acquire(context.Background(), l, key, time.Minute, &o); err == nil {
			t.Errorf("Acquire with %+v: no error", o)
		}
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Wrap with %+v did not panic", o)
				}
			}()
			retry.Wrap(l, &o)
		}()
		l.Close()
	}
	if _, err := retry.Acquire(context.Background(), nil, key, time.Minute, nil); !errors.Is(err, lock.ErrNilConfig) {
		t.Errorf("nil Locker: %v, want ErrNilConfig", err)
	}
}

func TestAcquire_LogsEachRetryAtDebugLevel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		var buf strings.Builder
		logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
			Level: slog.LevelDebug,
			ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
				if a.Key == slog.TimeKey {
					return slog.Attr{}
				}
				return a
			},
		}))
		o := opts(retry.Options{InitialInterval: time.Second, MaxInterval: time.Second, MaxAttempts: 2, Logger: logger}, randMax)
		if _, err := retry.Acquire(t.Context(), newRecorder(f.l), key, time.Minute, o); !errors.Is(err, lock.ErrLockNotAcquired) {
			t.Fatalf("err = %v", err)
		}
		want := `level=DEBUG msg="dlock: retrying acquire" key="\"k\"" attempt=1 wait=1s wait_for_release=false err="acquire \"k\": lock: not acquired"` + "\n"
		if buf.String() != want {
			t.Errorf("log:\n%s\nwant:\n%s", buf.String(), want)
		}
	})
}
