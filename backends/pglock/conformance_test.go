package pglock_test

import (
	"testing"
	"time"

	"github.com/dlockgo/dlock/backends/pglock"
	"github.com/dlockgo/dlock/lock/driver"
	"github.com/dlockgo/dlock/lock/locktest"
)

func TestConformance(t *testing.T) {
	t.Run("Advisory", func(t *testing.T) {
		pool := sharedPool(t)
		locktest.Run(t, func(t *testing.T) driver.Backend {
			b, err := pglock.NewBackend(ctxFor(t), pool, nil)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}, locktest.Options{AdvisoryTTL: true})
	})
	t.Run("EnforceTTL", func(t *testing.T) {
		pool := sharedPool(t)
		locktest.Run(t, func(t *testing.T) driver.Backend {
			b, err := pglock.NewBackend(ctxFor(t), pool, &pglock.Options{EnforceTTL: true})
			if err != nil {
				t.Fatal(err)
			}
			return b
		}, locktest.Options{Granularity: time.Millisecond})
	})
}
