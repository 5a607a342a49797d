package driver_test

import (
	"context"
	"fmt"
	"time"

	"github.com/dlockgo/dlock/backends/memlock"
	"github.com/dlockgo/dlock/lock/driver"
)

// Optional capabilities are found by type assertion.
func ExampleInspector() {
	store, _ := memlock.NewStore(nil)
	var b driver.Backend = store.Backend()
	ctx := context.Background()

	b.TryAcquire(ctx, "k", "0123456789abcdef0123456789abcdef:worker-1", time.Minute)
	if in, ok := b.(driver.Inspector); ok {
		h, held, _ := in.Inspect(ctx, "k")
		fmt.Println(held, h.Owner[33:], h.Token)
	}
	// Output: true worker-1 1
}
