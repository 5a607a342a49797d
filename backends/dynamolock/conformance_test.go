package dynamolock_test

import (
	"testing"

	"github.com/dlockgo/dlock/lock/driver"
	"github.com/dlockgo/dlock/lock/locktest"
)

// TestConformance runs the suite against dynalite. Expiry is judged by
// each client's clock; every client here shares the machine's clock, so
// the TTL is enforced as the suite means it (see the package
// documentation for clients on different machines).
func TestConformance(t *testing.T) {
	newClient(t) // the table
	locktest.Run(t, func(t *testing.T) driver.Backend {
		// Each backend gets a client of its own, as another process would.
		return newBackend(t, newClient(t), nil)
	}, locktest.Options{})
}
