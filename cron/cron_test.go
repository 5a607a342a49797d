package cron_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
	_ "time/tzdata" // the test must not depend on the machine's zoneinfo

	robfig "github.com/robfig/cron/v3"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/dlockgo/dlock/backends/memlock"
	"github.com/dlockgo/dlock/cron"
	"github.com/dlockgo/dlock/internal/leakcheck"
	"github.com/dlockgo/dlock/lock"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

func TestParse(t *testing.T) {
	base := time.Date(2026, 11, 22, 10, 17, 3, 0, time.UTC)
	tests := []struct {
		spec string
		want time.Time
	}{
		{"*/5 * * * *", time.Date(2026, 11, 22, 10, 20, 0, 0, time.UTC)},
		{"30 */2 * * * *", time.Date(2026, 11, 22, 10, 18, 30, 0, time.UTC)}, // even minutes
		{"@hourly", time.Date(2026, 11, 22, 11, 0, 0, 0, time.UTC)},
		{"@daily", time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)},
		{"@every 10s", time.Date(2026, 11, 22, 10, 17, 10, 0, time.UTC)},
		{"@every 250ms", time.Date(2026, 11, 22, 10, 17, 3, 250e6, time.UTC)},
		{"CRON_TZ=Asia/Tokyo 0 9 * * *", time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)}, // 09:00 JST
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			s, err := cron.Parse(tc.spec, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Next(base); !got.Equal(tc.want) {
				t.Errorf("Next(%v) = %v, want %v", base, got, tc.want)
			}
		})
	}
	for _, bad := range []string{"", "* * *", "61 * * * *", "@every", "@every -1s", "@every 0s", "@fortnightly", "CRON_TZ=Nowhere/Atlantis * * * * *"} {
		t.Run("Bad/"+bad, func(t *testing.T) {
			if _, err := cron.Parse(bad, nil); err == nil {
				t.Errorf("Parse(%q) succeeded", bad)
			}
		})
	}
}

func TestParse_EveryIsAlignedSoReplicasAgree(t *testing.T) {
	s, _ := cron.Parse("@every 10s", nil)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	want := base.Add(10 * time.Second)
	for _, off := range []time.Duration{0, time.Millisecond, 3 * time.Second, 9*time.Second + 999*time.Millisecond} {
		if got := s.Next(base.Add(off)); !got.Equal(want) {
			t.Errorf("Next(base+%v) = %v, want %v", off, got, want)
		}
	}
}

func TestParse_DefaultLocationIsUTCNotLocal(t *testing.T) {
	tokyo, err := time.LoadLocation("Asia/Tokyo") // time/tzdata is embedded below
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 11, 22, 0, 30, 0, 0, time.UTC)
	utc, _ := cron.Parse("0 9 * * *", nil)
	jst, _ := cron.Parse("0 9 * * *", tokyo)
	if got := utc.Next(base); got.Hour() != 9 || got.Location() != time.UTC && got.UTC().Hour() != 9 {
		t.Errorf("UTC schedule: %v", got)
	}
	if got := jst.Next(base).UTC(); got.Hour() != 0 {
		t.Errorf("Tokyo schedule: 09:00 JST is %v UTC, want 00:00", got)
	}
}

func TestNew_RejectsNilLocker(t *testing.T) {
	if _, err := cron.New(nil, nil); !errors.Is(err, lock.ErrNilDatabaseClient) {
		t.Errorf("New(nil) = %v", err)
	}
}

func TestAddJob_RejectsBadJobs(t *testing.T) {
	l, _ := memlock.New(nil)
	defer l.Close()
	s, _ := cron.New(l, nil)
	ok := func(context.Context) error { return nil }
	tests := []struct {
		name, jobName, spec string
		fn                  func(context.Context) error
		opts                *cron.JobOptions
		want                error
	}{
		{"EmptyName", "", "@hourly", ok, nil, lock.ErrEmptyKey},
		{"NilFunc", "j", "@hourly", nil, nil, lock.ErrNilConfig},
		{"BadSpec", "j", "every hour", ok, nil, nil},
		{"NegativeHold", "j", "@hourly", ok, &cron.JobOptions{MinHold: -1}, lock.ErrInvalidTTL},
		{"NameTooLong", string(make([]byte, lock.MaxKeyLength)), "@hourly", ok, nil, lock.ErrKeyTooLong},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := s.AddJob(tc.jobName, tc.spec, tc.fn, tc.opts)
			if err == nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("AddJob = %v, want %v", err, tc.want)
			}
		})
	}
	if err := s.AddJob("dup", "@hourly", ok, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.AddJob("dup", "@hourly", ok, nil); err == nil {
		t.Error("a job added twice was accepted")
	}
}

// replicas builds n Schedulers, each with its own Locker on one memlock
// store and its own clock skew.
func replicas(t *testing.T, n int, skews []time.Duration, opts cron.Options) []*cron.Scheduler {
	t.Helper()
	store, err := memlock.NewStore(nil)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]*cron.Scheduler, n)
	for i := range out {
		l, err := store.NewLocker(&lock.Options{Identity: fmt.Sprintf("replica-%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		o := opts
		skew := skews[i]
		o.Now = func() time.Time { return time.Now().Add(skew) }
		if out[i], err = cron.New(l, &o); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func runAll(ctx context.Context, ss []*cron.Scheduler) {
	var wg sync.WaitGroup
	for _, s := range ss {
		wg.Go(func() { s.Run(ctx) })
	}
	wg.Wait()
}

// TestScheduler_EachTickRunsExactlyOnceAcrossSkewedReplicas is the central
// promise: 5 replicas whose clocks disagree by up to ±400ms, a job every 2s
// whose runs take from nothing to 1.5s, 1,000 ticks: every tick ran on
// exactly one replica.
func TestScheduler_EachTickRunsExactlyOnceAcrossSkewedReplicas(t *testing.T) {
	dups, missed := skewRun(t, cron.JobOptions{})
	if dups != 0 || missed != 0 {
		t.Errorf("duplicates %d, missed %d; want 0 and 0", dups, missed)
	}
}

// TestScheduler_MinHoldBelowTheSkewLetsTicksRunTwice is the control: it
// shows that the test above can see duplicates, and that MinHold is what
// prevents them.
func TestScheduler_MinHoldBelowTheSkewLetsTicksRunTwice(t *testing.T) {
	dups, _ := skewRun(t, cron.JobOptions{MinHold: time.Millisecond})
	if dups == 0 {
		t.Error("no duplicate ticks with MinHold far below the skew; the skew test cannot detect them")
	}
}

// skewRun runs 5 replicas whose clocks disagree by up to ±400ms, a job
// every 2s whose runs take from nothing to 1.5s, for 1,000 ticks, and
// returns the ticks that ran more than once and those that never ran. Set
// DLOCK_SEED to replay a run.
func skewRun(t *testing.T, jopts cron.JobOptions) (dups, missed int) {
	const (
		nReplicas = 5
		every     = 2 * time.Second
		nTicks    = 1000
		maxSkew   = 400 * time.Millisecond
	)
	seed := rand.Uint64()
	if s := os.Getenv("DLOCK_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("DLOCK_SEED=%d", seed)
	synctest.Test(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(seed, 1))
		skews := make([]time.Duration, nReplicas)
		for i := range skews {
			skews[i] = time.Duration(rng.Int64N(int64(2*maxSkew))) - maxSkew
		}
		var mu sync.Mutex
		runs := map[time.Time][]int{}
		ss := replicas(t, nReplicas, skews, cron.Options{})
		for i, s := range ss {
			jobRng := rand.New(rand.NewPCG(seed, uint64(i+2)))
			err := s.AddJob("report", fmt.Sprintf("@every %v", every), func(ctx context.Context) error {
				tick, _ := cron.TickFrom(ctx)
				mu.Lock()
				runs[tick] = append(runs[tick], i)
				d := time.Duration(jobRng.Int64N(int64(1500 * time.Millisecond)))
				mu.Unlock()
				select {
				case <-time.After(d):
				case <-ctx.Done():
				}
				return nil
			}, &jopts)
			if err != nil {
				t.Fatal(err)
			}
		}
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), nTicks*every+every/2)
		defer cancel()
		runAll(ctx, ss)

		first := start.Truncate(every).Add(every) // every replica is up by then
		for i := range nTicks - 1 {
			tick := first.Add(time.Duration(i) * every)
			switch n := len(runs[tick]); {
			case n == 0:
				missed++
			case n > 1:
				dups++
			}
		}
		t.Logf("replicas %d (skews %v), ticks %d, MinHold %v: duplicates %d, missed %d",
			nReplicas, skews, nTicks-1, jopts.MinHold, dups, missed)
	})
	return dups, missed
}

func TestScheduler_JobContextEndsWhenTheLockIsLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store, _ := memlock.NewStore(nil)
		l, _ := store.NewLocker(nil)
		defer l.Close()
		reader := sdkmetric.NewManualReader()
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
		s, _ := cron.New(l, &cron.Options{MeterProvider: mp})
		var cause atomic.Value
		s.AddJob("j", "@every 1m", func(ctx context.Context) error {
			tick, _ := cron.TickFrom(ctx)
			key := "cron/j@" + tick.UTC().Format(time.RFC3339Nano)
			b := store.Backend()
			h, _, _ := b.Inspect(ctx, key)
			b.Release(ctx, key, h.Owner) // the store loses the lock
			<-ctx.Done()
			cause.Store(context.Cause(ctx))
			return ctx.Err()
		}, &cron.JobOptions{MaxHold: 30 * time.Second})
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		s.Run(ctx)
		if c, _ := cause.Load().(error); !errors.Is(c, lock.ErrLockNotHeld) {
			t.Errorf("job context cause = %v, want ErrLockNotHeld", c)
		}
		if got := counts(t, reader)["lost"]; got != 1 {
			t.Errorf("lost ticks counted = %d, want 1", got)
		}
	})
}

func TestScheduler_SkipIfRunningSkipsTicksWhileARunIsGoing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ss := replicas(t, 2, []time.Duration{0, 0}, cron.Options{})
		var runs atomic.Int32
		for _, s := range ss {
			s.AddJob("slow", "@every 10s", func(ctx context.Context) error {
				runs.Add(1)
				select {
				case <-time.After(25 * time.Second): // spans two more ticks
				case <-ctx.Done():
				}
				return nil
			}, &cron.JobOptions{SkipIfRunning: true})
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second+time.Second)
		defer cancel()
		runAll(ctx, ss)
		// Ticks at 10..60s: runs start at 10 and 40 (20, 30 skipped; 50, 60 skipped).
		if got := runs.Load(); got != 2 {
			t.Errorf("%d runs in 6 ticks of a 25s job, want 2", got)
		}
	})
}

func TestScheduler_TimeoutAndPanicAreFailuresNotCrashes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, _ := memlock.New(nil)
		defer l.Close()
		reader := sdkmetric.NewManualReader()
		s, _ := cron.New(l, &cron.Options{MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))})
		s.AddJob("panics", "@every 10s", func(context.Context) error { panic("boom") }, nil)
		s.AddJob("hangs", "@every 10s", func(ctx context.Context) error {
			<-ctx.Done()
			return ctx.Err()
		}, &cron.JobOptions{Timeout: time.Second})
		ctx, cancel := context.WithTimeout(context.Background(), 35*time.Second)
		defer cancel()
		s.Run(ctx)
		if got := counts(t, reader)["failed"]; got != 6 {
			t.Errorf("failed ticks = %d, want 6 (3 panics, 3 timeouts)", got)
		}
	})
}

func TestScheduler_RunReturnsWhenTheContextEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, _ := memlock.New(nil)
		defer l.Close()
		s, _ := cron.New(l, nil)
		started := make(chan struct{})
		s.AddJob("long", "@every 1s", func(ctx context.Context) error {
			close(started)
			<-ctx.Done()
			return nil
		}, &cron.JobOptions{SkipIfRunning: true})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- s.Run(ctx) }()
		<-started
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v, want context.Canceled", err)
		}
		if err := s.Run(context.Background()); err == nil {
			t.Error("second Run succeeded")
		}
	})
}

// TestJob_RobfigCronRunsEachTickOnOneReplica uses robfig/cron directly, as
// users who keep their own *cron.Cron do.
func TestJob_RobfigCronRunsEachTickOnOneReplica(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store, _ := memlock.NewStore(nil)
		var mu sync.Mutex
		runs := map[time.Time]int{}
		var crons []*robfig.Cron
		for range 3 {
			l, _ := store.NewLocker(nil)
			defer l.Close()
			job, err := cron.SingletonJob(l, "tick", "*/2 * * * * *", func(ctx context.Context) error {
				tick, _ := cron.TickFrom(ctx)
				mu.Lock()
				runs[tick]++
				mu.Unlock()
				return nil
			}, nil)
			if err != nil {
				t.Fatal(err)
			}
			c := robfig.New(robfig.WithSeconds())
			c.AddJob("*/2 * * * * *", job)
			c.Start()
			crons = append(crons, c)
		}
		time.Sleep(20*time.Second + time.Millisecond)
		for _, c := range crons {
			<-c.Stop().Done()
		}
		if len(runs) < 9 {
			t.Errorf("%d ticks ran in 20s of a 2s schedule", len(runs))
		}
		for tick, n := range runs {
			if n != 1 {
				t.Errorf("tick %v ran %d times", tick, n)
			}
		}
	})
}

// counts sums the dlock.cron.ticks counter by outcome.
func counts(t *testing.T, r *sdkmetric.ManualReader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "dlock.cron.ticks" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				o, _ := dp.Attributes.Value("dlock.cron.outcome")
				out[o.AsString()] += dp.Value
			}
		}
	}
	return out
}
