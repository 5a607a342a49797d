package pglock_test

import (
	"testing"
	"time"

	"github.com/dlockgo/dlock/backends/pglock"
	"github.com/dlockgo/dlock/lock/driver"
	"github.com/dlockgo/dlock/lock/locktest"
)

// withoutInspect hides the Inspector of a Backend that does not record its
// holders: its Inspect tells whether a key is held, not by whom, and the
// suite checks the owner.
type withoutInspect struct {
	driver.Backend
	driver.LossNotifier
	driver.Waiter
}

func TestConformance(t *testing.T) {
	modes := []struct {
		name  string
		opts  pglock.Options
		suite locktest.Options
	}{
		{"Advisory", pglock.Options{}, locktest.Options{AdvisoryTTL: true}},
		{"AdvisoryRecordHolders", pglock.Options{RecordHolders: true}, locktest.Options{AdvisoryTTL: true}},
		{"EnforceTTL", pglock.Options{EnforceTTL: true}, locktest.Options{Granularity: time.Millisecond}},
		{"EnforceTTLRecordHolders", pglock.Options{EnforceTTL: true, RecordHolders: true}, locktest.Options{Granularity: time.Millisecond}},
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			pool := sharedPool(t)
			locktest.Run(t, func(t *testing.T) driver.Backend {
				b, err := pglock.NewBackend(ctxFor(t), pool, &m.opts)
				if err != nil {
					t.Fatal(err)
				}
				if !m.opts.RecordHolders {
					return withoutInspect{b, b, b}
				}
				return b
			}, m.suite)
		})
	}
}
