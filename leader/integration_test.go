package leader_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dlockgo/dlock/internal/storetest"
	"github.com/dlockgo/dlock/leader"
	"github.com/dlockgo/dlock/lock"
	"github.com/dlockgo/dlock/lock/locktest"
)

// TestIntegration_LeaderChangesOnRealStores forces 50 leader changes by
// Resign on each real store, with five electors on their own connections,
// and checks with the checker that no two were ever inside fn at once and
// that terms strictly increase. Then it cuts the leader's connection (and
// closes its client, as a dying process would) three times and measures
// the failover against the TTL.
func TestIntegration_LeaderChangesOnRealStores(t *testing.T) {
	for _, s := range storetest.Real(t) {
		t.Run(s.Name, func(t *testing.T) {
			t.Parallel()
			const electors, changes, cuts = 5, 50, 3
			ttl := max(s.MinTTL, 3*time.Second)
			key := fmt.Sprintf("it/leader/%s/%d", s.Name, time.Now().UnixNano())
			checker := locktest.NewChecker()
			entered := make(chan int, 16)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			faults := make([]*locktest.Faulty, electors)
			lockers := make([]lock.Locker, electors)
			es := make([]*leader.Elector, electors)
			var wg sync.WaitGroup
			defer wg.Wait()
			defer cancel()
			for i := range es {
				faults[i] = locktest.NewFaulty(s.NewBackend(t))
				l, err := lock.New(faults[i], nil)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { l.Close() })
				lockers[i] = l
				if es[i], err = leader.New(l, key, &leader.Options{Identity: fmt.Sprintf("e%d", i), TTL: ttl}); err != nil {
					t.Fatal(err)
				}
			}
			for i, e := range es {
				wg.Go(func() {
					e.Run(ctx, func(ctx context.Context) error {
						term, _ := leader.TermFrom(ctx)
						who := fmt.Sprintf("e%d", i)
						checker.Enter(key, who, term)
						entered <- i
						<-ctx.Done()
						checker.Exit(key, who)
						return nil
					})
				})
			}
			wait := func() int {
				select {
				case i := <-entered:
					return i
				case <-time.After(ttl + 30*time.Second):
					t.Fatal("no leader elected")
					return -1
				}
			}
			cur := wait()
			var handovers []time.Duration
			for range changes {
				start := time.Now()
				if err := es[cur].Resign(ctx); err != nil {
					t.Fatal(err)
				}
				cur = wait()
				handovers = append(handovers, time.Since(start))
			}
			var failovers []time.Duration
			for range cuts {
				start := time.Now()
				faults[cur].Cut() // the connection is gone…
				lockers[cur].Close()
				next := wait() // …and so is the process
				failovers = append(failovers, time.Since(start))
				cur = next
			}
			cancel()
			wg.Wait()
			for _, p := range checker.Problems() {
				t.Error(p)
			}
			slices.Sort(handovers)
			t.Logf("%s: %d leaderships, 0 overlaps expected, got %d problems; handover after Resign: median %v, p95 %v; failover after a cut (TTL %v): %v",
				s.Name, checker.Sections(), len(checker.Problems()),
				handovers[len(handovers)/2].Round(time.Millisecond), handovers[len(handovers)*95/100].Round(time.Millisecond),
				ttl, roundAll(failovers))
		})
	}
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(10 * time.Millisecond)
	}
	return out
}
