package once_test

import (
	"context"
	"fmt"

	"github.com/dlockgo/dlock/backends/memlock"
	"github.com/dlockgo/dlock/once"
)

func ExampleDo() {
	ctx := context.Background()
	store, _ := memlock.NewStore(nil) // with Redis: redislock.New + redislock.NewRecords
	locker, _ := store.NewLocker(nil)
	defer locker.Close()

	for range 3 {
		res, err := once.Do(ctx, locker, store.Records(), "invoice/2026-11/acme", func(ctx context.Context, token uint64) error {
			fmt.Println("sending the invoice, fenced with token", token)
			return nil
		}, nil)
		fmt.Println(res.State, err)
	}
	// Output:
	// sending the invoice, fenced with token 1
	// ran <nil>
	// already done <nil>
	// already done <nil>
}
