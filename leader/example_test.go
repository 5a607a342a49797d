package leader_test

import (
	"context"
	"fmt"

	"github.com/dlockgo/dlock/backends/memlock"
	"github.com/dlockgo/dlock/leader"
)

func ExampleElector_Run() {
	locker, _ := memlock.New(nil) // every replica: the same store
	defer locker.Close()
	e, err := leader.New(locker, "billing-worker", &leader.Options{Identity: "replica-a"})
	if err != nil {
		panic(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	err = e.Run(ctx, func(ctx context.Context) error {
		term, _ := leader.TermFrom(ctx)
		info, _ := e.Leader(ctx)
		fmt.Println("leading as", info.Identity, "in term", term)
		stop() // a real worker runs until ctx ends
		return nil
	})
	fmt.Println(err)
	// Output:
	// leading as replica-a in term 1
	// context canceled
}
