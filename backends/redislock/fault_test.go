package redislock_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dlockgo/dlock/backends/redislock"
	"github.com/dlockgo/dlock/lock"
)

// Fault tests run against a redis-server of their own (startPrivateRedis):
// they restart, stop and stall it, which the shared server must never see.

func TestFault_RestartWithoutPersistence_OldHandlesAreNotHeldAndTokensKeepGrowing(t *testing.T) {
	r := startPrivateRedis(t)
	c := r.client(nil)
	l := newLocker(t, c, nil)
	ctx := context.Background()

	var maxBefore uint64
	for i := 0; i < 100; i++ {
		lk, err := l.Acquire(ctx, "orders", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		maxBefore = max(maxBefore, lk.Token())
		if err := lk.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	held, err := l.Acquire(ctx, "orders", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	maxBefore = max(maxBefore, held.Token())
	other, err := l.Acquire(ctx, "invoices", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	maxBefore = max(maxBefore, other.Token())

	r.restart() // no RDB, no AOF: the server forgets locks and counters

	if err := held.Refresh(ctx, time.Minute); !errors.Is(err, lock.ErrLockNotHeld) {
		t.Errorf("Refresh after restart = %v, want ErrLockNotHeld", err)
	}
	if err := other.Release(ctx); !errors.Is(err, lock.ErrLockNotHeld) {
		t.Errorf("Release after restart = %v, want ErrLockNotHeld", err)
	}
	after, err := l.Acquire(ctx, "orders", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer after.Release(ctx)
	t.Logf("largest token before the restart %d, first token after %d (+%d µs)",
		maxBefore, after.Token(), after.Token()-maxBefore)
	if after.Token() <= maxBefore {
		t.Fatalf("first token after the restart %d is not above %d", after.Token(), maxBefore)
	}
}

func TestFault_ServerStopped_AcquireIsAStoreErrorWithinTheDeadline(t *testing.T) {
	r := startPrivateRedis(t)
	for name, opt := range map[string]*redis.Options{
		"default client":          {},
		"ContextTimeoutEnabled":   {ContextTimeoutEnabled: true},
		"no retries, no deadline": {MaxRetries: -1},
	} {
		t.Run(name, func(t *testing.T) {
			if r.cmd == nil {
				r.restart()
			}
			l := newLocker(t, r.client(opt), nil)
			if err := l.Ping(context.Background()); err != nil {
				t.Fatal(err)
			}
			r.stop()
			const deadline = 500 * time.Millisecond
			ctx := context.Background()
			if opt.MaxRetries == 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, deadline)
				defer cancel()
			}
			start := time.Now()
			_, err := l.Acquire(ctx, "orders", time.Minute)
			took := time.Since(start)
			t.Logf("Acquire against a stopped server: %v after %v", err, took)
			if err == nil || errors.Is(err, lock.ErrLockNotAcquired) {
				t.Fatalf("Acquire = %v, want a store error", err)
			}
			if took > deadline+250*time.Millisecond {
				t.Fatalf("Acquire took %v, the deadline was %v", took, deadline)
			}
		})
	}
}

func TestFault_ServerStallsLongerThanTheDeadline_CtxErrorAndNoLeakedLock(t *testing.T) {
	r := startPrivateRedis(t)
	ctl := r.client(&redis.Options{MaxRetries: -1, ReadTimeout: 10 * time.Second})
	stalls := map[string]func(t *testing.T) <-chan error{
		"CLIENT PAUSE": func(t *testing.T) <-chan error {
			// Returns once the pause is in force.
			if err := ctl.Do(context.Background(), "client", "pause", 1500, "all").Err(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			close(done)
			return done
		},
		"DEBUG SLEEP": func(t *testing.T) <-chan error {
			done := make(chan error, 1)
			go func() { done <- ctl.Do(context.Background(), "debug", "sleep", 1.5).Err() }()
			// The server sleeps once a probe cannot get an answer.
			probe := r.client(&redis.Options{MaxRetries: -1, ContextTimeoutEnabled: true})
			for deadline := time.Now().Add(5 * time.Second); ; {
				ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
				err := probe.Ping(ctx).Err()
				cancel()
				if err != nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("DEBUG SLEEP never took effect")
				}
			}
			return done
		},
	}
	for stall, begin := range stalls {
		for _, cte := range []bool{false, true} {
			name := stall + "/default client"
			if cte {
				name = stall + "/ContextTimeoutEnabled"
			}
			t.Run(name, func(t *testing.T) {
				c := r.client(&redis.Options{ContextTimeoutEnabled: cte})
				l := newLocker(t, c, nil)
				key := randomKey(t)
				if err := l.Ping(context.Background()); err != nil { // warm the pool
					t.Fatal(err)
				}
				stalled := begin(t)
				const deadline = 300 * time.Millisecond
				ctx, cancel := context.WithTimeout(context.Background(), deadline)
				defer cancel()
				start := time.Now()
				_, err := l.Acquire(ctx, key, time.Minute)
				took := time.Since(start)
				t.Logf("Acquire during %s: %v after %v", stall, err, took)
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("Acquire = %v, want the ctx error", err)
				}
				if took > deadline+250*time.Millisecond {
					t.Fatalf("Acquire took %v, the deadline was %v", took, deadline)
				}
				if err := <-stalled; err != nil {
					t.Fatalf("stall: %v", err)
				}
				// The stall is over: the lock must be free well before its
				// one-minute TTL could have freed it.
				b, err := redislock.NewBackend(ctl, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer b.Close()
				for until := time.Now().Add(10 * time.Second); ; {
					h, held, err := b.Inspect(context.Background(), key)
					if err != nil {
						t.Fatal(err)
					}
					if !held {
						break
					}
					if time.Now().After(until) {
						t.Fatalf("lock leaked: held by %q, %v left", h.Owner, h.TTL)
					}
					time.Sleep(10 * time.Millisecond) // polling with a deadline
				}
				lk, err := l.Acquire(context.Background(), key, time.Minute)
				if err != nil {
					t.Fatalf("Acquire after the stall: %v", err)
				}
				if err := lk.Release(context.Background()); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

func TestFault_ServerStopped_HoldCancelsBeforeTheTTLRunsOut(t *testing.T) {
	r := startPrivateRedis(t)
	l := newLocker(t, r.client(nil), nil)
	ctx := context.Background()
	const ttl = time.Second
	lk, err := l.Acquire(ctx, "orders", ttl)
	if err != nil {
		t.Fatal(err)
	}
	held, stop := lock.Hold(ctx, lk, nil)
	// Let one refresh succeed, so that the deadline is a refresh's.
	first := lk.(lock.Expirer).Expiry()
	for until := time.Now().Add(5 * time.Second); !lk.(lock.Expirer).Expiry().After(first); {
		if time.Now().After(until) {
			t.Fatal("no refresh within 5s")
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
	r.stop()
	stopped := time.Now()
	select {
	case <-held.Done():
	case <-time.After(5 * ttl):
		t.Fatal("the held context was not cancelled")
	}
	cancelled := time.Now()
	expiry := lk.(lock.Expirer).Expiry()
	t.Logf("server stopped; held ctx cancelled %v later, %v before the lock could have expired: %v",
		cancelled.Sub(stopped), expiry.Sub(cancelled), context.Cause(held))
	if !cancelled.Before(expiry) {
		t.Errorf("held ctx cancelled at expiry%+v", cancelled.Sub(expiry))
	}
	if !errors.Is(context.Cause(held), lock.ErrLockNotHeld) {
		t.Errorf("cause %v, want ErrLockNotHeld", context.Cause(held))
	}
	if err := stop(); err == nil || errors.Is(err, lock.ErrLockNotAcquired) {
		t.Errorf("stop against a stopped server = %v, want a store error", err)
	}
}
