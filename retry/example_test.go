package retry_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dlockgo/dlock/backends/memlock"
	"github.com/dlockgo/dlock/lock"
	"github.com/dlockgo/dlock/retry"
)

// Wait up to a deadline for a key that someone else holds.
func ExampleAcquire() {
	ctx := context.Background()
	store, _ := memlock.NewStore(nil)
	a, _ := store.NewLocker(nil)
	b, _ := store.NewLocker(nil)
	defer a.Close()
	defer b.Close()

	held, _ := a.Acquire(ctx, "invoices", time.Minute)
	go func() {
		time.Sleep(20 * time.Millisecond) // a's work
		held.Release(ctx)
	}()

	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	lk, err := retry.Acquire(wctx, b, "invoices", time.Minute, nil)
	if err != nil {
		panic(err)
	}
	defer lk.Release(ctx)
	fmt.Println("b holds", lk.Key(), "with token", lk.Token())
	// Output: b holds invoices with token 2
}

// When the context ends first, the error says both why the wait stopped
// and what the last attempt found.
func ExampleAcquire_deadline() {
	ctx := context.Background()
	store, _ := memlock.NewStore(nil)
	a, _ := store.NewLocker(nil)
	b, _ := store.NewLocker(nil)
	defer a.Close()
	defer b.Close()

	held, _ := a.Acquire(ctx, "invoices", time.Minute)
	defer held.Release(ctx)

	ctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err := retry.Acquire(ctx, b, "invoices", time.Minute, nil)
	fmt.Println("deadline:", errors.Is(err, context.DeadlineExceeded))
	fmt.Println("busy:", errors.Is(err, lock.ErrLockNotAcquired))
	// Output:
	// deadline: true
	// busy: true
}

// A wrapped Locker waits in Acquire, so lock.Do and other code written
// against lock.Locker wait too.
func ExampleWrap() {
	ctx := context.Background()
	store, _ := memlock.NewStore(nil)
	a, _ := store.NewLocker(nil)
	defer a.Close()
	inner, _ := store.NewLocker(nil)
	b := retry.Wrap(inner, &retry.Options{MaxElapsedTime: 10 * time.Second})
	defer b.Close()

	held, _ := a.Acquire(ctx, "nightly-report", 30*time.Millisecond) // expires soon

	err := lock.Do(ctx, b, "nightly-report", time.Minute, func(ctx context.Context) error {
		fmt.Println("b runs the report")
		return nil
	})
	fmt.Println("err:", err)
	fmt.Println("a's release:", errors.Is(held.Release(ctx), lock.ErrLockNotHeld))
	// Output:
	// b runs the report
	// err: <nil>
	// a's release: true
}
