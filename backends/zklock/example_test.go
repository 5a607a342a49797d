package zklock_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dlockgo/dlock/backends/zklock"
	"github.com/dlockgo/dlock/lock"
)

func Example() {
	locker, err := zklock.New([]string{"127.0.0.1:2181"}, &zklock.Options{Root: "/myapp/locks"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer locker.Close() // ends the sessions: frees every lock still held

	ctx := context.Background()
	lk, err := locker.Acquire(ctx, "report:2026-11", 10*time.Second)
	switch {
	case errors.Is(err, lock.ErrLockNotAcquired):
		fmt.Println("someone else is writing the report")
		return
	case err != nil:
		fmt.Println("zookeeper failed:", err)
		return
	}
	defer lk.Release(context.WithoutCancel(ctx))

	// The lock lives on a session of at least its TTL: if this process dies
	// or is cut off, ZooKeeper frees it that long after it last heard from
	// us. Pass the fencing token (the node's creation zxid) with every write.
	fmt.Println("writing with token", lk.Token(), "for", lk.TTL())
}

// Hold cancels its context as soon as the lock is lost: the session
// expired, or the lock node was deleted.
func Example_hold() {
	locker, err := zklock.New([]string{"127.0.0.1:2181"}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer locker.Close()

	ctx := context.Background()
	err = lock.Do(ctx, locker, "nightly-compaction", 8*time.Second, func(ctx context.Context) error {
		// Work under ctx: it is cancelled, with cause lock.ErrLockNotHeld,
		// if ZooKeeper takes the lock away.
		for step := range 10 {
			if err := ctx.Err(); err != nil {
				return context.Cause(ctx)
			}
			fmt.Println("compacting part", step)
		}
		return nil
	})
	fmt.Println(err)
}
