package once_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dlockgo/dlock/backends/memlock"
	"github.com/dlockgo/dlock/internal/leakcheck"
	"github.com/dlockgo/dlock/lock"
	"github.com/dlockgo/dlock/lock/locktest"
	"github.com/dlockgo/dlock/once"
	"github.com/dlockgo/dlock/retry"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

func newLocker(t *testing.T, s *memlock.Store) lock.Locker {
	t.Helper()
	l, err := s.NewLocker(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// fastRetry keeps waiting callers' polls short.
var fastRetry = &retry.Options{InitialInterval: time.Millisecond, MaxInterval: 20 * time.Millisecond}

func TestDo_ConcurrentCallersCompleteEachKeyExactlyOnce(t *testing.T) {
	store, _ := memlock.NewStore(nil)
	const callers, keys = 10, 200
	var runs [keys]atomic.Int32
	var wg sync.WaitGroup
	states := make(chan once.State, callers*keys)
	for c := range callers {
		l := newLocker(t, store)
		wg.Go(func() {
			for k := range keys {
				key := fmt.Sprintf("job-%d", (k+c*17)%keys) // callers meet on keys in different orders
				res, err := once.Do(context.Background(), l, store.Records(), key, func(ctx context.Context, token uint64) error {
					var i int
					fmt.Sscanf(key, "job-%d", &i)
					runs[i].Add(1)
					return nil
				}, &once.Options{Retry: fastRetry})
				if err != nil {
					t.Error(err)
					return
				}
				states <- res.State
			}
		})
	}
	wg.Wait()
	close(states)
	byState := map[once.State]int{}
	for s := range states {
		byState[s]++
	}
	for i := range keys {
		if n := runs[i].Load(); n != 1 {
			t.Errorf("job-%d completed %d times", i, n)
		}
	}
	t.Logf("keys %d, callers %d: %v", keys, callers, byState)
	if byState[once.Ran] != keys || byState[once.AlreadyDone] != keys*(callers-1) {
		t.Errorf("states = %v, want %d ran and %d already done", byState, keys, keys*(callers-1))
	}
}

func TestDo_FailedRunLeavesNoRecordAndIsRetried(t *testing.T) {
	store, _ := memlock.NewStore(nil)
	l := newLocker(t, store)
	boom := errors.New("boom")
	_, err := once.Do(context.Background(), l, store.Records(), "k", func(context.Context, uint64) error { return boom }, nil)
	if !errors.Is(err, boom) {
		t.Fatalf("Do = %v, want boom", err)
	}
	res, err := once.Do(context.Background(), l, store.Records(), "k", func(context.Context, uint64) error { return nil }, nil)
	if err != nil || res.State != once.Ran {
		t.Fatalf("second Do = %+v, %v; want Ran", res, err)
	}
	res, err = once.Do(context.Background(), l, store.Records(), "k", func(context.Context, uint64) error {
		t.Error("ran a completed job")
		return nil
	}, nil)
	if err != nil || res.State != once.AlreadyDone {
		t.Errorf("third Do = %+v, %v; want AlreadyDone", res, err)
	}
}

func TestDo_NoWaitReturnsBusy(t *testing.T) {
	store, _ := memlock.NewStore(nil)
	a, b := newLocker(t, store), newLocker(t, store)
	inside := make(chan struct{})
	release := make(chan struct{})
	go once.Do(context.Background(), a, store.Records(), "k", func(context.Context, uint64) error {
		close(inside)
		<-release
		return nil
	}, nil)
	<-inside
	res, err := once.Do(context.Background(), b, store.Records(), "k", func(context.Context, uint64) error {
		t.Error("ran while another caller runs")
		return nil
	}, &once.Options{NoWait: true})
	close(release)
	if err != nil || res.State != once.Busy {
		t.Errorf("Do = %+v, %v; want Busy", res, err)
	}
	a.Close() // waits for nothing; the goroutine's Do has returned or will
}

func TestDo_CrashedRunnerIsTakenOverAfterItsTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store, _ := memlock.NewStore(nil)
		crashed := locktest.NewFaulty(store.Backend())
		la, _ := lock.New(crashed, nil)
		lb := newLocker(t, store)
		inside := make(chan struct{})
		gone := make(chan struct{}) // closed at the end, so the bubble can finish
		ended := make(chan struct{})
		defer func() { close(gone); <-ended; la.Close() }()
		go func() {
			defer close(ended)
			once.Do(context.Background(), la, store.Records(), "k", func(ctx context.Context, _ uint64) error {
				close(inside)
				crashed.FailNext(1<<30, nil) // the runner's process is gone: no more refreshes
				<-gone                       // and it never returns while the test looks
				return nil
			}, &once.Options{TTL: 10 * time.Second})
		}()
		<-inside
		start := time.Now()
		res, err := once.Do(context.Background(), lb, store.Records(), "k", func(context.Context, uint64) error { return nil },
			&once.Options{TTL: 10 * time.Second, Retry: fastRetry})
		if err != nil || res.State != once.Ran {
			t.Fatalf("Do = %+v, %v; want Ran", res, err)
		}
		if d := time.Since(start); d < 10*time.Second || d > 11*time.Second {
			t.Errorf("took over after %v, want just after the 10s TTL", d)
		}
	})
}

func TestDo_StaleRunnerIsFencedOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store, _ := memlock.NewStore(nil)
		paused := locktest.NewFaulty(store.Backend())
		la, _ := lock.New(paused, nil)
		defer la.Close()
		lb := newLocker(t, store)
		var staleErr error
		wake := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, staleErr = once.Do(context.Background(), la, store.Records(), "k", func(ctx context.Context, _ uint64) error {
				paused.FailNext(1<<30, nil) // paused: its refreshes never reach the store
				<-wake                      // it wakes up long after its TTL, unaware
				return nil
			}, &once.Options{TTL: 10 * time.Second})
		}()
		time.Sleep(time.Second)
		res, err := once.Do(context.Background(), lb, store.Records(), "k", func(context.Context, uint64) error { return nil },
			&once.Options{TTL: 10 * time.Second, Retry: fastRetry})
		if err != nil || res.State != once.Ran {
			t.Fatalf("takeover = %+v, %v; want Ran", res, err)
		}
		paused.FailNext(0, nil)
		close(wake)
		<-done
		if !errors.Is(staleErr, once.ErrFencedOut) {
			t.Errorf("stale runner's Do = %v, want ErrFencedOut", staleErr)
		}
		if _, by, _ := store.Records().Done(context.Background(), "k"); by != res.Token {
			t.Errorf("record by token %d, want the takeover's %d", by, res.Token)
		}
	})
}

func TestDo_CallerCancelledMidJobLeavesItToOthers(t *testing.T) {
	store, _ := memlock.NewStore(nil)
	const keys = 50
	var completions [keys]atomic.Int32
	var wg sync.WaitGroup
	for c := range 4 {
		l := newLocker(t, store)
		wg.Go(func() {
			for k := range keys {
				ctx, cancel := context.WithCancel(context.Background())
				key := fmt.Sprintf("k%d", k)
				_, err := once.Do(ctx, l, store.Records(), key, func(ctx context.Context, _ uint64) error {
					if c == 0 {
						cancel() // this caller is killed mid-job
						return ctx.Err()
					}
					completions[k].Add(1)
					return nil
				}, &once.Options{Retry: fastRetry})
				cancel()
				if err != nil && !errors.Is(err, context.Canceled) {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	for k := range keys {
		if n := completions[k].Load(); n != 1 {
			t.Errorf("k%d completed %d times", k, n)
		}
	}
}

func TestDo_RejectsBadArguments(t *testing.T) {
	store, _ := memlock.NewStore(nil)
	l := newLocker(t, store)
	fn := func(context.Context, uint64) error { return nil }
	tests := []struct {
		name string
		do   func() error
		want error
	}{
		{"NilLocker", func() error { _, err := once.Do(context.Background(), nil, store.Records(), "k", fn, nil); return err }, lock.ErrNilDatabaseClient},
		{"NilStore", func() error { _, err := once.Do(context.Background(), l, nil, "k", fn, nil); return err }, lock.ErrNilDatabaseClient},
		{"NilFunc", func() error { _, err := once.Do(context.Background(), l, store.Records(), "k", nil, nil); return err }, lock.ErrNilConfig},
		{"EmptyKey", func() error { _, err := once.Do(context.Background(), l, store.Records(), "", fn, nil); return err }, lock.ErrEmptyKey},
		{"NegativeTTL", func() error {
			_, err := once.Do(context.Background(), l, store.Records(), "k", fn, &once.Options{TTL: -1})
			return err
		}, lock.ErrInvalidTTL},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.do(); !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
		})
	}
}
