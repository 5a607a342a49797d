package etcdlock_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dlockgo/dlock/backends/etcdlock"
	"github.com/dlockgo/dlock/lock"
)

func Example() {
	client, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{"127.0.0.1:2379"},
		DialTimeout: 5 * time.Second,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer client.Close()

	locker, err := etcdlock.New(client, &etcdlock.Options{KeyPrefix: "/myapp/locks/"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer locker.Close()

	ctx := context.Background()
	lk, err := locker.Acquire(ctx, "report:2026-11", 10*time.Second)
	switch {
	case errors.Is(err, lock.ErrLockNotAcquired):
		fmt.Println("someone else is writing the report")
		return
	case err != nil:
		fmt.Println("etcd failed:", err)
		return
	}
	defer lk.Release(context.WithoutCancel(ctx))

	// Pass the fencing token with every write the lock protects.
	fmt.Println("writing with token", lk.Token(), "for", lk.TTL())
}
