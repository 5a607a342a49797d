package cron_test

import (
	"context"
	"fmt"
	"time"

	"github.com/dlockgo/dlock/backends/memlock"
	"github.com/dlockgo/dlock/cron"
	"github.com/dlockgo/dlock/lock"
)

func ExampleScheduler() {
	locker, _ := memlock.New(nil) // every replica: the same store, e.g. redislock
	defer locker.Close()
	sched, err := cron.New(locker, nil)
	if err != nil {
		panic(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	err = sched.AddJob("cleanup", "@every 100ms", func(ctx context.Context) error {
		_, ok := cron.TickFrom(ctx)
		token, _ := lock.TokenFrom(ctx)
		fmt.Println("this replica runs the tick:", ok, "token", token)
		stop() // end the example after one tick
		return nil
	}, nil)
	if err != nil {
		panic(err)
	}
	sched.Run(ctx) // blocks until ctx ends
	// Output: this replica runs the tick: true token 1
}

func ExampleParse() {
	s, _ := cron.Parse("@every 15m", nil)
	from := time.Date(2026, 11, 22, 9, 7, 0, 0, time.UTC)
	fmt.Println(s.Next(from).Format(time.Kitchen))
	// Output: 9:15AM
}
