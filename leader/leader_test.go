package leader_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dlockgo/dlock/backends/memlock"
	"github.com/dlockgo/dlock/internal/leakcheck"
	"github.com/dlockgo/dlock/leader"
	"github.com/dlockgo/dlock/lock"
	"github.com/dlockgo/dlock/lock/locktest"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// cluster is n electors, each on its own fault-injectable connection to
// one memlock store.
type cluster struct {
	store    *memlock.Store
	faults   []*locktest.Faulty
	electors []*leader.Elector
	checker  *locktest.Checker
}

func newCluster(t *testing.T, n int, opts leader.Options) *cluster {
	t.Helper()
	c := &cluster{checker: locktest.NewChecker()}
	c.store, _ = memlock.NewStore(nil)
	for i := range n {
		f := locktest.NewFaulty(c.store.Backend())
		l, err := lock.New(f, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		o := opts
		o.Identity = fmt.Sprintf("e%d", i)
		e, err := leader.New(l, "election", &o)
		if err != nil {
			t.Fatal(err)
		}
		c.faults = append(c.faults, f)
		c.electors = append(c.electors, e)
	}
	return c
}

// work is an fn that records its critical section and leads until its
// context ends.
func (c *cluster) work(who string, entered chan<- string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		term, _ := leader.TermFrom(ctx)
		c.checker.Enter("election", who, term)
		if entered != nil {
			entered <- who
		}
		<-ctx.Done()
		c.checker.Exit("election", who)
		return nil
	}
}

func (c *cluster) runAll(ctx context.Context, entered chan<- string) *sync.WaitGroup {
	var wg sync.WaitGroup
	for i, e := range c.electors {
		wg.Go(func() { e.Run(ctx, c.work(fmt.Sprintf("e%d", i), entered)) })
	}
	return &wg
}

func (c *cluster) leaderIndex() int {
	for i, e := range c.electors {
		if e.IsLeader() {
			return i
		}
	}
	return -1
}

func TestRun_OneLeaderAtATimeOverFiftyResignations(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, leader.Options{TTL: 10 * time.Second})
		ctx, cancel := context.WithCancel(context.Background())
		entered := make(chan string, 100)
		wg := c.runAll(ctx, entered)
		var handovers []time.Duration
		<-entered // the first leader
		for range 50 {
			i := c.leaderIndex()
			start := time.Now()
			if err := c.electors[i].Resign(ctx); err != nil {
				t.Fatal(err)
			}
			<-entered // the next leader
			handovers = append(handovers, time.Since(start))
		}
		cancel()
		wg.Wait()
		for _, p := range c.checker.Problems() {
			t.Error(p)
		}
		if n := c.checker.Sections(); n < 51 {
			t.Errorf("%d leaderships, want at least 51", n)
		}
		slices.Sort(handovers)
		t.Logf("leaderships %d; handover after Resign: median %v, max %v", c.checker.Sections(), handovers[len(handovers)/2], handovers[len(handovers)-1])
	})
}

func TestResign_HandsOverAtOnceOnAStoreThatCanWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 2, leader.Options{TTL: 10 * time.Second})
		ctx, cancel := context.WithCancel(context.Background())
		entered := make(chan string, 4)
		wg := c.runAll(ctx, entered)
		first := <-entered
		start := time.Now()
		c.electors[c.leaderIndex()].Resign(ctx)
		second := <-entered
		if first == second {
			t.Errorf("%s won again right after resigning", first)
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("handover took %v, want no time (memlock wakes waiters on release)", d)
		}
		cancel()
		wg.Wait()
	})
}

func TestRun_LostLeadershipCancelsFnAndCampaignsAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 1, leader.Options{TTL: 9 * time.Second})
		var reasons []error
		var mu sync.Mutex
		e := c.electors[0]
		l, _ := c.store.NewLocker(nil)
		defer l.Close()
		e2, _ := leader.New(l, "election", &leader.Options{
			TTL: 9 * time.Second, Identity: "e0",
			OnStopped: func(_ leader.Info, reason error) { mu.Lock(); reasons = append(reasons, reason); mu.Unlock() },
		})
		_ = e
		ctx, cancel := context.WithCancel(context.Background())
		terms := make(chan uint64, 4)
		done := make(chan struct{})
		go func() {
			defer close(done)
			e2.Run(ctx, func(ctx context.Context) error {
				term, _ := leader.TermFrom(ctx)
				terms <- term
				<-ctx.Done()
				return nil
			})
		}()
		t1 := <-terms
		// The store loses the lock (an operator's DEL, a failover).
		b := c.store.Backend()
		h, _, _ := b.Inspect(ctx, "election")
		b.Release(ctx, "election", h.Owner)
		t2 := <-terms
		if t2 <= t1 {
			t.Errorf("new term %d is not above the lost one %d", t2, t1)
		}
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		if len(reasons) == 0 || !errors.Is(reasons[0], lock.ErrLockNotHeld) {
			t.Errorf("first step-down reason = %v, want ErrLockNotHeld", reasons)
		}
	})
}

func TestRun_ConnectionCutFailsOverWithinTheTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ttl = 9 * time.Second
		c := newCluster(t, 3, leader.Options{TTL: ttl})
		ctx, cancel := context.WithCancel(context.Background())
		entered := make(chan string, 8)
		wg := c.runAll(ctx, entered)
		<-entered
		i := c.leaderIndex()
		start := time.Now()
		c.faults[i].Cut() // the leader's connection to the store is gone
		next := <-entered
		failover := time.Since(start)
		if next == fmt.Sprintf("e%d", i) {
			t.Errorf("the cut-off leader %s led again", next)
		}
		if failover > ttl+2*time.Second {
			t.Errorf("failover took %v, want about the TTL (%v)", failover, ttl)
		}
		c.faults[i].Heal()
		cancel()
		wg.Wait()
		for _, p := range c.checker.Problems() {
			t.Error(p)
		}
		t.Logf("failover after a cut connection: %v (TTL %v)", failover, ttl)
	})
}

func TestRun_FnErrorIsReportedAndStopsOnlyWhenAsked(t *testing.T) {
	boom := errors.New("boom")
	for _, stop := range []bool{false, true} {
		t.Run(fmt.Sprintf("StopOnError=%v", stop), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				l, _ := memlock.New(nil)
				defer l.Close()
				var stopped []error
				e, _ := leader.New(l, "election", &leader.Options{
					StopOnError: stop,
					OnStopped:   func(_ leader.Info, reason error) { stopped = append(stopped, reason) },
				})
				var runs atomic.Int32
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				err := e.Run(ctx, func(context.Context) error {
					runs.Add(1)
					return boom
				})
				if stop {
					if !errors.Is(err, boom) || runs.Load() != 1 {
						t.Errorf("Run = %v after %d runs, want boom after 1", err, runs.Load())
					}
				} else if !errors.Is(err, context.DeadlineExceeded) || runs.Load() < 2 {
					t.Errorf("Run = %v after %d runs, want to keep campaigning until the deadline", err, runs.Load())
				}
				if len(stopped) == 0 || !errors.Is(stopped[0], boom) {
					t.Errorf("OnStopped reasons = %v, want boom", stopped)
				}
			})
		})
	}
}

func TestLeader_ReportsTheCurrentLeader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 2, leader.Options{TTL: 9 * time.Second})
		if _, err := c.electors[0].Leader(context.Background()); !errors.Is(err, leader.ErrNoLeader) {
			t.Errorf("Leader with nobody leading = %v, want ErrNoLeader", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		entered := make(chan string, 4)
		wg := c.runAll(ctx, entered)
		who := <-entered
		for _, e := range c.electors {
			info, err := e.Leader(ctx)
			if err != nil || info.Identity != who || info.Term == 0 {
				t.Errorf("%s: Leader = %+v, %v; want %s", e.Identity(), info, err, who)
			}
		}
		cancel()
		wg.Wait()
	})
}

func TestCallbacks_ReportEveryNewLeaderOnEveryReplica(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store, _ := memlock.NewStore(nil)
		var mu sync.Mutex
		seen := map[string][]uint64{} // replica → terms seen
		var started atomic.Int32
		var electors []*leader.Elector
		for i := range 3 {
			l, _ := store.NewLocker(nil)
			defer l.Close()
			id := fmt.Sprintf("e%d", i)
			e, err := leader.New(l, "election", &leader.Options{
				Identity:    id,
				TTL:         9 * time.Second,
				OnStarted:   func(context.Context, leader.Info) { started.Add(1) },
				OnNewLeader: func(info leader.Info) { mu.Lock(); seen[id] = append(seen[id], info.Term); mu.Unlock() },
			})
			if err != nil {
				t.Fatal(err)
			}
			electors = append(electors, e)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for _, e := range electors {
			wg.Go(func() {
				e.Run(ctx, func(ctx context.Context) error { <-ctx.Done(); return nil })
			})
		}
		for round := range 3 {
			time.Sleep(10 * time.Second) // a few observation intervals
			for _, e := range electors {
				if e.IsLeader() {
					e.Resign(ctx)
					break
				}
			}
			_ = round
		}
		time.Sleep(10 * time.Second)
		cancel()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for id, terms := range seen {
			if len(terms) < 4 {
				t.Errorf("%s saw terms %v, want the 4 leaders", id, terms)
			}
			for i := 1; i < len(terms); i++ {
				if terms[i] <= terms[i-1] {
					t.Errorf("%s saw terms out of order: %v", id, terms)
				}
			}
		}
		if got := started.Load(); got != 4 {
			t.Errorf("OnStarted called %d times, want 4", got)
		}
	})
}

func TestNew_RejectsBadArguments(t *testing.T) {
	l, _ := memlock.New(nil)
	defer l.Close()
	if _, err := leader.New(nil, "k", nil); !errors.Is(err, lock.ErrNilDatabaseClient) {
		t.Errorf("nil locker: %v", err)
	}
	if _, err := leader.New(l, "", nil); !errors.Is(err, lock.ErrEmptyKey) {
		t.Errorf("empty key: %v", err)
	}
	if _, err := leader.New(l, "k", &leader.Options{TTL: -1}); !errors.Is(err, lock.ErrInvalidTTL) {
		t.Errorf("negative TTL: %v", err)
	}
	e, _ := leader.New(l, "k", nil)
	if e.Identity() == "" {
		t.Error("no default identity")
	}
}
