package pglock_test

import (
	"context"
	"errors"
	"log"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dlockgo/dlock/backends/pglock"
	"github.com/dlockgo/dlock/lock"
)

func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://app@127.0.0.1:5432/app")
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	locker, err := pglock.New(ctx, pool, &pglock.Options{Lock: lock.Options{Identity: "worker-1"}})
	if err != nil {
		log.Fatal(err)
	}
	defer locker.Close()

	lk, err := locker.Acquire(ctx, "jobs/nightly", time.Minute)
	if errors.Is(err, lock.ErrLockNotAcquired) {
		return // another worker runs it
	}
	if err != nil {
		log.Fatal(err)
	}
	held, stop := lock.Hold(ctx, lk, nil)
	defer stop()
	_ = held // run the job under held; pass lk.Token() with every write
}

// With EnforceTTL the server frees a lock whose holder stopped refreshing.
func Example_enforceTTL() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://app@127.0.0.1:5432/app")
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	locker, err := pglock.New(ctx, pool, &pglock.Options{EnforceTTL: true})
	if err != nil {
		log.Fatal(err)
	}
	defer locker.Close()

	err = lock.Do(ctx, locker, "reports/rebuild", 10*time.Second, func(ctx context.Context) error {
		return nil // work under ctx, cancelled if the lock is lost
	})
	if err != nil && !errors.Is(err, lock.ErrLockNotAcquired) {
		log.Print(err)
	}
}

func ExampleKeyID() {
	// The advisory lock id of a key, to look it up in pg_locks (classid is
	// the high 32 bits, objid the low 32 bits, objsubid 1).
	id := pglock.KeyID("", "jobs/nightly")
	_ = id
}
