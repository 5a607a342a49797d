package lock_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dlockgo/dlock/backends/memlock"
	"github.com/dlockgo/dlock/lock"
)

func Example() {
	ctx := context.Background()
	locker, err := memlock.New(nil)
	if err != nil {
		panic(err)
	}
	defer locker.Close()

	lk, err := locker.Acquire(ctx, "invoices/2026-11", 30*time.Second)
	if errors.Is(err, lock.ErrLockNotAcquired) {
		fmt.Println("someone else is on it")
		return
	}
	if err != nil {
		panic(err) // the store failed: not the same as "busy"
	}
	defer lk.Release(ctx)
	fmt.Println("holding", lk.Key(), "with fencing token", lk.Token())
	// Output: holding invoices/2026-11 with fencing token 1
}

func ExampleDo() {
	ctx := context.Background()
	locker, _ := memlock.New(nil)
	defer locker.Close()

	err := lock.Do(ctx, locker, "nightly-report", time.Minute, func(ctx context.Context) error {
		// ctx is cancelled, with cause lock.ErrLockNotHeld, the moment the
		// lock can no longer be vouched for: check it, and stop writing.
		fmt.Println("building the report")
		return ctx.Err()
	})
	fmt.Println("err:", err)
	// Output:
	// building the report
	// err: <nil>
}

func ExampleHold() {
	ctx := context.Background()
	locker, _ := memlock.New(nil)
	defer locker.Close()

	lk, err := locker.Acquire(ctx, "migration", 10*time.Second)
	if err != nil {
		panic(err)
	}
	held, stop := lock.Hold(ctx, lk, nil) // refreshes every TTL/3
	defer stop()                          // stops refreshing and releases

	select {
	case <-held.Done():
		fmt.Println("lost the lock:", context.Cause(held))
	default:
		fmt.Println("still ours; write with token", lk.Token())
	}
	// Output: still ours; write with token 1
}

func ExampleLock_Token() {
	ctx := context.Background()
	locker, _ := memlock.New(nil)
	defer locker.Close()

	// Each successive holder of a key gets a larger token. Send it with
	// every write, and let the resource refuse smaller ones:
	//
	//	UPDATE jobs SET state = $1, fence = $2 WHERE id = $3 AND fence < $2
	for range 3 {
		lk, _ := locker.Acquire(ctx, "job/42", time.Minute)
		fmt.Println(lk.Token())
		lk.Release(ctx)
	}
	// Output:
	// 1
	// 2
	// 3
}
