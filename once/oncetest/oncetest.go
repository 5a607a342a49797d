// Package oncetest is the conformance suite for implementations of
// once.Store, the completion records of package once.
package oncetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"testing"
	"time"

	"github.com/dlockgo/dlock/once"
)

// Options declare what the store can do.
type Options struct {
	// RetentionGranularity is the precision of retention times (e.g. 1s
	// for stores that keep TTLs in whole seconds). Default: 1ms.
	RetentionGranularity time.Duration
}

// Run runs the suite against store. Keys are random, so the store need not
// be empty.
func Run(t *testing.T, store once.Store, opts Options) {
	if opts.RetentionGranularity <= 0 {
		opts.RetentionGranularity = time.Millisecond
	}
	ctx := context.Background()
	key := func() string {
		var b [8]byte
		rand.Read(b[:])
		return "oncetest/" + t.Name() + "/" + hex.EncodeToString(b[:])
	}
	t.Run("FreshKeyIsNotDone", func(t *testing.T) {
		done, by, err := store.Done(ctx, key())
		if done || by != 0 || err != nil {
			t.Errorf("Done = %v, %d, %v; want false, 0, nil", done, by, err)
		}
	})
	t.Run("BeginThenCompleteRecords", func(t *testing.T) {
		k := key()
		if done, _, err := store.Begin(ctx, k, 7, 0); done || err != nil {
			t.Fatalf("Begin = %v, %v", done, err)
		}
		if ok, err := store.Complete(ctx, k, 7, 0); !ok || err != nil {
			t.Fatalf("Complete = %v, %v", ok, err)
		}
		if done, by, err := store.Done(ctx, k); !done || by != 7 || err != nil {
			t.Errorf("Done = %v, %d, %v; want true, 7, nil", done, by, err)
		}
		if done, by, err := store.Begin(ctx, k, 9, 0); !done || by != 7 || err != nil {
			t.Errorf("Begin after completion = %v, %d, %v; want true, 7, nil", done, by, err)
		}
	})
	t.Run("CompleteTwiceIsRefused", func(t *testing.T) {
		k := key()
		store.Begin(ctx, k, 1, 0)
		store.Complete(ctx, k, 1, 0)
		if ok, err := store.Complete(ctx, k, 1, 0); ok || err != nil {
			t.Errorf("second Complete = %v, %v; want false, nil", ok, err)
		}
	})
	t.Run("LaterBeginFencesOutAnEarlierRun", func(t *testing.T) {
		k := key()
		store.Begin(ctx, k, 5, 0)
		store.Begin(ctx, k, 6, 0)
		if ok, err := store.Complete(ctx, k, 5, 0); ok || err != nil {
			t.Errorf("Complete by the fenced-out run = %v, %v; want false, nil", ok, err)
		}
		if ok, err := store.Complete(ctx, k, 6, 0); !ok || err != nil {
			t.Errorf("Complete by the latest run = %v, %v; want true, nil", ok, err)
		}
	})
	t.Run("FenceNeverGoesDown", func(t *testing.T) {
		k := key()
		store.Begin(ctx, k, 10, 0)
		store.Begin(ctx, k, 3, 0) // a stale runner arriving late
		if ok, _ := store.Complete(ctx, k, 3, 0); ok {
			t.Error("a lower token lowered the fence and completed")
		}
		if ok, err := store.Complete(ctx, k, 10, 0); !ok || err != nil {
			t.Errorf("Complete by the highest token = %v, %v", ok, err)
		}
	})
	t.Run("CompleteWithoutBeginIsRefused", func(t *testing.T) {
		if ok, err := store.Complete(ctx, key(), 1, 0); ok || err != nil {
			t.Errorf("Complete without Begin = %v, %v; want false, nil", ok, err)
		}
	})
	t.Run("LargeTokens", func(t *testing.T) {
		k := key()
		const big = 1<<63 + 12345 // above int64
		store.Begin(ctx, k, big-1, 0)
		store.Begin(ctx, k, big, 0)
		if ok, err := store.Complete(ctx, k, big-1, 0); ok || err != nil {
			t.Errorf("Complete(big-1) = %v, %v; want false", ok, err)
		}
		if ok, err := store.Complete(ctx, k, big, 0); !ok || err != nil {
			t.Errorf("Complete(big) = %v, %v; want true", ok, err)
		}
		if _, by, _ := store.Done(ctx, k); by != big {
			t.Errorf("by = %d, want %d", by, uint64(big))
		}
	})
	t.Run("ConcurrentCompletionsOneWins", func(t *testing.T) {
		k := key()
		store.Begin(ctx, k, 42, 0)
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins := 0
		for range 8 {
			wg.Go(func() {
				if ok, err := store.Complete(ctx, k, 42, 0); ok && err == nil {
					mu.Lock()
					wins++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if wins != 1 {
			t.Errorf("%d concurrent Completes succeeded, want 1", wins)
		}
	})
	t.Run("RetentionForgetsTheRecord", func(t *testing.T) {
		k := key()
		ret := max(opts.RetentionGranularity, 200*time.Millisecond)
		store.Begin(ctx, k, 1, ret)
		store.Complete(ctx, k, 1, ret)
		if done, _, _ := store.Done(ctx, k); !done {
			t.Fatal("record not visible")
		}
		deadline := time.Now().Add(ret + opts.RetentionGranularity + 3*time.Second)
		for {
			done, _, err := store.Done(ctx, k)
			if err != nil {
				t.Fatal(err)
			}
			if !done {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("record still there well after its retention of %v", ret)
			}
			time.Sleep(20 * time.Millisecond) // polling interval
		}
	})
	t.Run("CancelledContext", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, _, err := store.Done(cctx, key()); err == nil {
			t.Error("Done with a cancelled context succeeded")
		}
	})
}
