package once_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlockgo/dlock/internal/storetest"
	"github.com/dlockgo/dlock/lock"
	"github.com/dlockgo/dlock/lock/locktest"
	"github.com/dlockgo/dlock/once"
	"github.com/dlockgo/dlock/retry"
)

// TestIntegration_ExactlyOneCompletionPerKeyOnRealStores: 10 callers, each
// on its own connection, call once.Do for the same 200 keys on each real
// store; caller 0 is killed mid-job (its context cancelled) on every 10th
// key, and caller 1's connection is cut halfway. Every key must end with
// exactly one completed run and one record.
func TestIntegration_ExactlyOneCompletionPerKeyOnRealStores(t *testing.T) {
	for _, s := range storetest.Real(t) {
		t.Run(s.Name, func(t *testing.T) {
			t.Parallel()
			const callers, keys = 10, 200
			prefix := fmt.Sprintf("it/once/%s/%d/", s.Name, time.Now().UnixNano())
			records := s.Records(t)
			var completions [keys]atomic.Int32
			var killed atomic.Int32
			opts := &once.Options{TTL: max(s.MinTTL, 3*time.Second), Retry: &retry.Options{InitialInterval: 5 * time.Millisecond, MaxInterval: 100 * time.Millisecond}}
			var wg sync.WaitGroup
			for c := range callers {
				f := locktest.NewFaulty(s.NewBackend(t))
				l, err := lock.New(f, nil)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { l.Close() })
				wg.Go(func() {
					for i := range keys {
						k := (i + c*keys/callers) % keys // callers meet in different orders
						if c == 1 && i == keys/2 {
							f.Cut() // caller 1 loses its connection for good
						}
						ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
						_, err := once.Do(ctx, l, records, fmt.Sprintf("%s%d", prefix, k), func(ctx context.Context, token uint64) error {
							if c == 0 && k%10 == 0 {
								killed.Add(1)
								cancel() // killed mid-job
								return ctx.Err()
							}
							completions[k].Add(1)
							return nil
						}, opts)
						cancel()
						if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, locktest.ErrInjected) {
							t.Errorf("caller %d, key %d: %v", c, k, err)
						}
					}
				})
			}
			wg.Wait()
			bad := 0
			for k := range keys {
				if n := completions[k].Load(); n != 1 {
					bad++
					t.Errorf("key %d completed %d times", k, n)
				}
				if done, _, err := records.Done(context.Background(), fmt.Sprintf("%s%d", prefix, k)); !done || err != nil {
					t.Errorf("key %d: no completion record (%v)", k, err)
				}
			}
			t.Logf("%s: %d keys × %d callers, %d runs killed mid-job, 1 caller cut off: keys completed exactly once %d/%d",
				s.Name, keys, callers, killed.Load(), keys-bad, keys)
		})
	}
}
