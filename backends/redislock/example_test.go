package redislock_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dlockgo/dlock/backends/redislock"
	"github.com/dlockgo/dlock/lock"
)

func ExampleNew() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()

	locker, err := redislock.New(rdb, &redislock.Options{Lock: lock.Options{Identity: "billing-1"}})
	if err != nil {
		log.Fatal(err)
	}
	defer locker.Close()

	ctx := context.Background()
	lk, err := locker.Acquire(ctx, "invoice/42", 30*time.Second)
	if errors.Is(err, lock.ErrLockNotAcquired) {
		fmt.Println("someone else is on it")
		return
	}
	if err != nil {
		log.Fatal(err) // Redis failed: not the same as "busy"
	}
	defer lk.Release(ctx)
	fmt.Println("fencing token for the writes:", lk.Token())
}

func ExampleNew_cluster() {
	rdb := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs: []string{"127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"},
	})
	defer rdb.Close()

	locker, err := redislock.New(rdb, &redislock.Options{KeyPrefix: "myapp:lock:"})
	if err != nil {
		log.Fatal(err)
	}
	defer locker.Close()

	// Hold keeps the lock alive and cancels ctx the moment it cannot.
	err = lock.Do(context.Background(), locker, "nightly-report", 10*time.Second,
		func(ctx context.Context) error {
			token, _ := lock.TokenFrom(ctx)
			fmt.Println("writing with fencing token", token)
			return nil
		})
	if err != nil && !errors.Is(err, lock.ErrLockNotAcquired) {
		log.Fatal(err)
	}
}

func ExampleNew_inspect() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()

	locker, err := redislock.New(rdb, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer locker.Close()

	// The Redis store can tell who holds a key.
	in := locker.(lock.Inspector)
	h, held, err := in.Inspect(context.Background(), "invoice/42")
	if err != nil {
		log.Fatal(err)
	}
	if held {
		fmt.Printf("held by %q with token %d for %v more\n", h.Identity, h.Token, h.TTL)
	}
}
