package memlock_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dlockgo/dlock/backends/memlock"
	"github.com/dlockgo/dlock/lock"
)

// Two Lockers on one Store behave like two processes sharing a real store.
func ExampleStore() {
	ctx := context.Background()
	store, _ := memlock.NewStore(nil)
	replicaA, _ := store.NewLocker(&lock.Options{Identity: "replica-a"})
	replicaB, _ := store.NewLocker(&lock.Options{Identity: "replica-b"})
	defer replicaA.Close()
	defer replicaB.Close()

	lk, _ := replicaA.Acquire(ctx, "leader", time.Minute)
	_, err := replicaB.Acquire(ctx, "leader", time.Minute)
	fmt.Println("replica-b:", errors.Is(err, lock.ErrLockNotAcquired))

	h, _, _ := store.Backend().Inspect(ctx, "leader")
	fmt.Println("held by", lock.OwnerIdentity(h.Owner), "token", h.Token)
	lk.Release(ctx)
	// Output:
	// replica-b: true
	// held by replica-a token 1
}

func ExampleNew() {
	locker, err := memlock.New(nil)
	if err != nil {
		panic(err)
	}
	defer locker.Close()
	lk, _ := locker.Acquire(context.Background(), "k", time.Second)
	fmt.Println(lk.Token())
	// Output: 1
}
