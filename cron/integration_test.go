package cron_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dlockgo/dlock/cron"
	"github.com/dlockgo/dlock/internal/storetest"
)

// TestIntegration_EachTickOnceOnRealStores runs 3 replicas of an @every 1s
// job on each real store for 30 ticks: every tick runs exactly once.
func TestIntegration_EachTickOnceOnRealStores(t *testing.T) {
	for _, s := range storetest.Real(t) {
		t.Run(s.Name, func(t *testing.T) {
			t.Parallel()
			const ticks = 30
			prefix := fmt.Sprintf("it/cron/%s/%d/", s.Name, time.Now().UnixNano())
			var mu sync.Mutex
			runs := map[time.Time][]int{}
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), ticks*time.Second+500*time.Millisecond)
			defer cancel()
			var wg sync.WaitGroup
			for i := range 3 {
				sched, err := cron.New(s.NewLocker(t, nil), &cron.Options{KeyPrefix: prefix})
				if err != nil {
					t.Fatal(err)
				}
				err = sched.AddJob("job", "@every 1s", func(ctx context.Context) error {
					tick, _ := cron.TickFrom(ctx)
					mu.Lock()
					runs[tick] = append(runs[tick], i)
					mu.Unlock()
					return nil
				}, &cron.JobOptions{MaxHold: max(s.MinTTL, 2*time.Second)})
				if err != nil {
					t.Fatal(err)
				}
				wg.Go(func() { sched.Run(ctx) })
			}
			wg.Wait()
			first := start.Truncate(time.Second).Add(time.Second)
			dups, missed := 0, 0
			for i := range ticks - 1 {
				switch n := len(runs[first.Add(time.Duration(i)*time.Second)]); {
				case n == 0:
					missed++
				case n > 1:
					dups++
				}
			}
			t.Logf("%s: 3 replicas, %d ticks: duplicates %d, missed %d", s.Name, ticks-1, dups, missed)
			if dups != 0 || missed != 0 {
				t.Errorf("duplicates %d, missed %d; want 0, 0", dups, missed)
			}
		})
	}
}
