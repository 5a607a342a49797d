// Command quickstart shows dlock's atom at work on the embedded in-memory
// store: a few workers contend for one key; exactly one holds it at a time,
// and every holder gets a larger fencing token than the one before.
//
//	go run ./examples/quickstart
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dlockgo/dlock/backends/memlock"
	"github.com/dlockgo/dlock/lock"
)

func main() {
	workers := flag.Int("workers", 4, "number of contending workers")
	rounds := flag.Int("rounds", 3, "critical sections each worker completes")
	flag.Parse()
	if err := run(*workers, *rounds); err != nil {
		log.Fatal(err)
	}
}

func run(workers, rounds int) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// One in-memory store; each worker is a separate client of it, as
	// separate processes would be of Redis, PostgreSQL or etcd.
	store, err := memlock.NewStore(nil)
	if err != nil {
		return err
	}

	const key = "reports/daily"
	var (
		inside      atomic.Int32  // workers inside the critical section now
		lastToken   atomic.Uint64 // the largest token seen
		overlaps    atomic.Int32
		regressions atomic.Int32
		refused     atomic.Int32 // attempts that found the key held
		sections    atomic.Int32
		wg          sync.WaitGroup
	)
	start := time.Now()
	for w := 1; w <= workers; w++ {
		locker, err := store.NewLocker(&lock.Options{Identity: fmt.Sprintf("worker-%d", w)})
		if err != nil {
			return err
		}
		defer locker.Close()
		wg.Go(func() {
			for done := 0; done < rounds; {
				err := lock.Do(ctx, locker, key, 5*time.Second, func(ctx context.Context) error {
					token, _ := lock.TokenFrom(ctx)
					if n := inside.Add(1); n != 1 {
						overlaps.Add(1)
					}
					if prev := lastToken.Swap(token); token <= prev {
						regressions.Add(1)
					}
					fmt.Printf("%6.3fs  worker-%d  holds %q  fencing token %d\n", time.Since(start).Seconds(), w, key, token)
					time.Sleep(time.Duration(20+rand.IntN(40)) * time.Millisecond) // the work
					inside.Add(-1)
					return nil
				})
				switch {
				case errors.Is(err, lock.ErrLockNotAcquired):
					refused.Add(1)
					time.Sleep(time.Duration(5+rand.IntN(20)) * time.Millisecond) // busy: try again soon
				case err != nil:
					fmt.Fprintln(os.Stderr, "worker", w, err)
					return
				default:
					done++
					sections.Add(1)
					time.Sleep(time.Duration(30+rand.IntN(30)) * time.Millisecond) // other work
				}
			}
		})
	}
	wg.Wait()
	fmt.Printf("\n%d critical sections by %d workers (%d attempts refused while the key was held): %d overlaps, %d token regressions.\n",
		sections.Load(), workers, refused.Load(), overlaps.Load(), regressions.Load())
	if overlaps.Load() != 0 || regressions.Load() != 0 {
		return errors.New("mutual exclusion or fencing violated")
	}
	return nil
}
